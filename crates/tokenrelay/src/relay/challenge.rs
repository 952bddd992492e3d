//! Reading an upstream's `WWW-Authenticate` challenges (RFC 9110 §11.6.1),
//! for one question: did it say that the token itself is no longer accepted
//! (RFC 6750 §3.1 `error="invalid_token"`: revoked, expired early)? Then a
//! new token is the cure, whatever the old one's age.
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Schemes and parameter names are case-insensitive, values are not; a
//! malformed part ends the reading of that header line, never the relay.

#![deny(clippy::arithmetic_side_effects)]

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

/// RFC 6750 §3: the scheme whose `error` parameter is read.
const BEARER: &str = "Bearer";
/// RFC 6750 §3.1: "The access token provided is expired, revoked, malformed,
/// or invalid for other reasons."
const INVALID_TOKEN: &str = "invalid_token";

/// Whether any `WWW-Authenticate` challenge in `headers` is
/// `Bearer` with `error="invalid_token"`.
pub(super) fn token_revoked(headers: &HeaderMap) -> bool {
    headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).flat_map(challenges).any(|c| {
        c.scheme.eq_ignore_ascii_case(BEARER)
            && c.params.iter().any(|(name, value)| name.eq_ignore_ascii_case("error") && value == INVALID_TOKEN)
    })
}

/// One challenge: its scheme and auth-params (a token68 is skipped).
#[derive(Debug, PartialEq, Eq)]
struct Challenge<'a> {
    scheme: &'a str,
    params: Vec<(&'a str, String)>,
}

/// The challenges of one header value, as far as it is well-formed.
fn challenges(value: &str) -> Vec<Challenge<'_>> {
    let mut c = Cursor { text: value, at: 0 };
    let mut out = Vec::new();
    loop {
        // Empty list elements are allowed (RFC 9110 §5.6.1).
        c.skip_space();
        while c.eat(b',') {
            c.skip_space();
        }
        let Some(scheme) = c.token() else { break };
        let mut challenge = Challenge { scheme, params: Vec::new() };
        c.skip_space();
        if !c.token68() {
            while let Some(param) = c.auth_param() {
                challenge.params.push(param);
                c.skip_space();
                if !c.eat(b',') {
                    break;
                }
                c.skip_space();
            }
        }
        out.push(challenge);
    }
    out
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Moves `n` bytes on; saturating, though a header never reaches `usize::MAX`.
    fn advance(&mut self, n: usize) {
        self.at = self.at.saturating_add(n);
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        self.advance(usize::from(found));
        found
    }

    /// BWS / OWS: spaces and tabs.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.advance(1);
        }
    }

    /// 1*tchar (RFC 9110 §5.6.2).
    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            self.advance(1);
        }
        (self.at > start).then(|| &self.text[start..self.at])
    }

    /// Consumes a token68 (RFC 9110 §11.2) when one ends the challenge here.
    fn token68(&mut self) -> bool {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)) {
            self.advance(1);
        }
        if self.at == start {
            return false;
        }
        while self.eat(b'=') {}
        self.skip_space();
        if matches!(self.peek(), None | Some(b',')) {
            return true;
        }
        self.at = start;
        false
    }

    /// `name = value`; leaves the cursor where it was when there is none
    /// (e.g. the next challenge's scheme).
    fn auth_param(&mut self) -> Option<(&'a str, String)> {
        let start = self.at;
        let param = self.name_and_value();
        if param.is_none() {
            self.at = start;
        }
        param
    }

    fn name_and_value(&mut self) -> Option<(&'a str, String)> {
        let name = self.token()?;
        self.skip_space();
        self.eat(b'=').then_some(())?;
        self.skip_space();
        let value = if self.peek() == Some(b'"') { self.quoted()? } else { self.token()?.to_owned() };
        Some((name, value))
    }

    /// A quoted-string with its backslash escapes undone (RFC 9110 §5.6.4).
    fn quoted(&mut self) -> Option<String> {
        self.eat(b'"').then_some(())?;
        let mut value = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.advance(1);
                    return String::from_utf8(value).ok();
                }
                b'\\' => {
                    value.push(*self.text.as_bytes().get(self.at.saturating_add(1))?);
                    self.advance(2);
                }
                b => {
                    value.push(b);
                    self.advance(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn revoked(values: &[&'static str]) -> bool {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        token_revoked(&headers)
    }

    #[test]
    fn invalid_token_is_read_in_every_spelling_the_grammar_allows() {
        for value in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer error=invalid_token"#,
            r#"bearer ERROR = "invalid_token""#,
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
            r#"Bearer realm="a, error=\"x\"", error="invalid_token""#,
            r#"Basic realm="api", Bearer error="invalid_token""#,
            r#"Basic dXNlcjpwYXNz, Bearer error="invalid_token""#,
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Bearer error="invalid_\token""#,
            r#", , Bearer   error="invalid_token" ,"#,
        ] {
            assert!(revoked(&[value]), "{value}");
        }
        assert!(revoked(&["Basic realm=\"api\"", "Bearer error=\"invalid_token\""]), "on another header line");
    }

    #[test]
    fn other_401s_are_not_revocations() {
        for value in [
            r#"Bearer error="insufficient_scope""#,
            r#"Bearer"#,
            r#"Bearer realm="error=\"invalid_token\"""#,
            r#"Bearer error_description="invalid_token""#,
            r#"Bearer error="INVALID_TOKEN""#,
            r#"Basic error="invalid_token""#,
            r#"Bearer error="invalid_token"#,
            r#"Bearer error=="#,
            r#"Bearer @@@ error="invalid_token""#,
            "",
        ] {
            assert!(!revoked(&[value]), "{value}");
        }
        assert!(!revoked(&[]), "no challenge at all");
    }

    #[test]
    fn challenges_split_schemes_params_and_token68() {
        let parsed = challenges(r#"Basic abc+/==, Bearer realm="r", error=invalid_token, DPoP algs="ES256""#);
        let schemes: Vec<&str> = parsed.iter().map(|c| c.scheme).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP"]);
        assert_eq!(parsed[1].params, [("realm", "r".to_owned()), ("error", "invalid_token".to_owned())]);
    }
}

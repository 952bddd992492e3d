//! Putting the credentials on the outgoing request: the token (as a header
//! in the configured format, or as a query parameter) and the extra headers
//! (e.g. Getty's `Api-Key`), all marked sensitive.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

use super::scrub::Scrubber;
use crate::config::relay::{Inject, UpstreamRelay};
use crate::error::Error;
use crate::relay::TrustedKeyMap;
use crate::token::Token;

/// The credentials of one attempt.
pub(super) struct Credentials {
    /// Each to replace what the request has of its name.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// `(name, token)` when the token goes in the query.
    pub(super) query: Option<(String, String)>,
}

/// The headers and query parameter for `token`.
pub(super) fn credentials(relay: &UpstreamRelay, upstream: &str, token: &Token) -> Result<Credentials, Error> {
    let mut headers = Vec::with_capacity(relay.headers.len() + 1);
    for (name, param) in &relay.headers {
        // Validated when the config was loaded.
        if let Ok(mut value) = HeaderValue::from_str(param.expose()) {
            value.set_sensitive(true);
            headers.push((name.clone(), value));
        }
    }
    let query = match &relay.inject {
        Inject::Query { name } => Some((name.clone(), token.expose().to_owned())),
        Inject::Header { name, prefix, suffix } => {
            let token = token.expose();
            // Written into one buffer that the value then owns: no formatting, no copy.
            let mut written = Vec::with_capacity(prefix.len() + token.len() + suffix.len());
            written.extend_from_slice(prefix.as_bytes());
            written.extend_from_slice(token.as_bytes());
            written.extend_from_slice(suffix.as_bytes());
            let mut value =
                HeaderValue::from_maybe_shared(Bytes::from(written)).map_err(|_| Error::TokenResponseInvalid {
                    upstream: upstream.to_owned(),
                    reason: "the token contains characters that cannot go in an HTTP header".to_owned(),
                })?;
            value.set_sensitive(true);
            headers.push((name.clone(), value));
            None
        }
    };
    Ok(Credentials { headers, query })
}

/// The scrubber of each upstream, rebuilt only when its token changes:
/// building the automaton on every request cost about a sixth of the relay's CPU.
/// Shared by the clones of a relay.
#[derive(Default, Clone)]
pub(super) struct Scrubbers(Arc<Mutex<TrustedKeyMap<String, (Token, Scrubber)>>>);

impl std::fmt::Debug for Scrubbers {
    /// Names the upstreams only: the scrubbers hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_tuple("Scrubbers").field(&built.keys().collect::<Vec<_>>()).finish()
    }
}

impl Scrubbers {
    pub(super) fn get(&self, upstream: &str, relay: &UpstreamRelay, token: &Token) -> Scrubber {
        let mut built = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, scrubber)) = built.get(upstream).filter(|(t, _)| t.same_value(token)) {
            return scrubber.clone();
        }
        let scrubber = scrubber(relay, token);
        built.insert(upstream.to_owned(), (token.clone(), scrubber.clone()));
        scrubber
    }
}

/// Every injected secret value, to be scrubbed from responses.
fn scrubber(relay: &UpstreamRelay, token: &Token) -> Scrubber {
    let extra = relay.headers.iter().filter_map(|(_, p)| p.secret()).map(|s| s.as_bytes().to_vec());
    Scrubber::new(extra.chain(std::iter::once(token.expose().as_bytes().to_vec())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::relay::Route;
    use crate::param::Param;
    use http::header::HeaderName;
    use secrecy::SecretString;

    fn relay(inject: Inject) -> UpstreamRelay {
        UpstreamRelay::test(vec![Route::test("/**")], inject).with_headers(vec![(
            HeaderName::from_static("api-key"),
            Param::Env { name: "GETTY_API_KEY".into(), value: SecretString::from("key-123".to_owned()) },
        )])
    }

    #[test]
    fn header_injection_uses_the_format_and_marks_values_sensitive() {
        let inject = Inject::Header {
            name: HeaderName::from_static("authorization"),
            prefix: "Bearer ".into(),
            suffix: String::new(),
        };
        let c = credentials(&relay(inject), "getty", &Token::new("tok_1", None)).unwrap();
        let value = |name: &str| c.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(value("authorization").unwrap(), "Bearer tok_1");
        assert_eq!(value("api-key").unwrap(), "key-123");
        assert!(c.headers.iter().all(|(_, v)| v.is_sensitive()));
        assert!(c.query.is_none());
    }

    #[test]
    fn query_injection_leaves_headers_to_the_extras() {
        let r = relay(Inject::Query { name: "access_token".into() });
        let c = credentials(&r, "getty", &Token::new("tok_1", None)).unwrap();
        assert_eq!(c.query, Some(("access_token".to_owned(), "tok_1".to_owned())));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_a_token_error_without_the_value() {
        let inject = Inject::Header {
            name: HeaderName::from_static("authorization"),
            prefix: String::new(),
            suffix: String::new(),
        };
        let Err(err) = credentials(&relay(inject), "getty", &Token::new("tok\nX-Evil: 1", None)) else {
            panic!("accepted")
        };
        assert_eq!(err.code(), "token_response_invalid");
        assert!(!err.to_string().contains("X-Evil"), "{err}");
    }

    #[test]
    fn cached_scrubber_follows_token_rotation() {
        let (relay, cache) = (relay(Inject::Query { name: "k".into() }), Scrubbers::default());
        assert!(cache.get("u", &relay, &Token::new("tok_old", None)).contains(b"x tok_old x"));
        let rotated = cache.get("u", &relay, &Token::new("tok_new", None));
        assert!(rotated.contains(b"x tok_new x"), "rebuilt for the new token");
        assert!(!rotated.contains(b"x tok_old x"));
    }

    #[test]
    fn scrubber_covers_token_and_env_headers() {
        let s = scrubber(&relay(Inject::Query { name: "k".into() }), &Token::new("tok_1", None));
        assert!(s.contains(b"..tok_1..") && s.contains(b"key-123"));
    }
}

//! The relay session: after a proof, a signed cookie lets the caller in
//! without a new one until it expires.
//!
//! `tokenrelay_session=v1.<expires>.<subject>.<tag>`: `expires` in Unix
//! seconds, `subject` the keyed hash of the caller (never the login's `sub`
//! in clear), `tag` HMAC-SHA256 (RFC 2104) over the version, upstream, the
//! proof the session was earned with, expiry and subject, under a key derived
//! from `TOKENRELAY_ENCRYPTION_KEY` for this use only (`store::keys`). The tag
//! is compared in constant time (`Mac::verify_slice`).

#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::Mac as _;
use http::header::{self, HeaderMap, HeaderValue};

use crate::relay::Mount;
use crate::store::SessionKey;

/// The cookie's name.
pub(super) const COOKIE: &str = "tokenrelay_session";
/// The format's version, first in the value and in the signed text.
const VERSION: &str = "v1";

/// Signs and checks the sessions of one upstream under one proof.
pub(super) struct Sessions<'a> {
    pub(super) key: &'a SessionKey,
    /// Where the relay answers: the cookie's path is the upstream's below it.
    pub(super) mount: &'a Mount,
    pub(super) upstream: &'a str,
    /// What the session is bound to (`Proof::binding`).
    pub(super) binding: &'a str,
}

impl Sessions<'_> {
    /// The `Set-Cookie` value of a session for `subject` lasting `lifetime` from `now`.
    pub(super) fn issue(&self, subject: &str, lifetime: Duration, now: SystemTime) -> Option<HeaderValue> {
        let expires = now.checked_add(lifetime)?.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let tag = self.tag(expires, subject);
        // The path keeps the cookie to this upstream's relay calls; `Secure`
        // and `SameSite=Strict` keep it off plain HTTP and other sites' requests.
        let cookie = format!(
            "{COOKIE}={VERSION}.{expires}.{subject}.{tag}; Max-Age={}; Path={}/{}; HttpOnly; Secure; SameSite=Strict",
            lifetime.as_secs(),
            self.mount.as_str(),
            self.upstream
        );
        HeaderValue::from_str(&cookie).ok()
    }

    /// The subject of the first valid, unexpired session cookie in `headers`.
    pub(super) fn check(&self, headers: &HeaderMap, now: SystemTime) -> Option<String> {
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        cookies(headers).find_map(|value| self.verify(value, now))
    }

    fn verify(&self, value: &str, now: u64) -> Option<String> {
        let mut parts = value.split('.');
        let (version, expires, subject, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION || parts.next().is_some() {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(expires, subject).verify_slice(&tag).ok()?;
        (expires > now).then(|| subject.to_owned())
    }

    fn tag(&self, expires: u64, subject: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(expires, subject).finalize().into_bytes())
    }

    fn mac(&self, expires: u64, subject: &str) -> hmac::Hmac<sha2::Sha256> {
        let text = format!("{VERSION}\n{}\n{}\n{expires}\n{subject}", self.upstream, self.binding);
        self.key.mac().chain_update(text.as_bytes())
    }
}

/// The values of every `tokenrelay_session` cookie in `headers` (RFC 6265 §5.4).
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn key(secret: &[u8]) -> SessionKey {
        SessionKey::derive(secret)
    }

    fn sessions<'a>(key: &'a SessionKey, upstream: &'a str, binding: &'a str) -> Sessions<'a> {
        Sessions { key, mount: Box::leak(Box::default()), upstream, binding }
    }

    /// The `Cookie` request header a browser sends back for `set_cookie`.
    fn cookie_header(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        h
    }

    #[test]
    fn a_session_is_accepted_until_it_expires() {
        let k = key(b"k");
        let s = sessions(&k, "api", "turnstile");
        let issued = s.issue("subj", Duration::from_secs(60), UNIX_EPOCH + NOW).unwrap();
        let text = issued.to_str().unwrap();
        for attr in ["Max-Age=60", "Path=/api/relay/api", "HttpOnly", "Secure", "SameSite=Strict"] {
            assert!(text.contains(attr), "{text}");
        }
        let h = cookie_header(&issued);
        assert_eq!(s.check(&h, UNIX_EPOCH + NOW + Duration::from_secs(59)).as_deref(), Some("subj"));
        assert_eq!(s.check(&h, UNIX_EPOCH + NOW + Duration::from_secs(60)), None, "expired");
    }

    #[test]
    fn the_cookie_is_scoped_to_the_upstream_below_the_mount() {
        let k = key(b"k");
        let mount = Mount::new("/v1/relay").unwrap();
        let s = Sessions { key: &k, mount: &mount, upstream: "api", binding: "turnstile" };
        let issued = s.issue("subj", Duration::from_secs(60), UNIX_EPOCH + NOW).unwrap();
        assert!(issued.to_str().unwrap().contains("; Path=/v1/relay/api;"), "{issued:?}");
    }

    #[test]
    fn tampered_or_foreign_sessions_are_refused() {
        let k = key(b"k");
        let s = sessions(&k, "api", "turnstile");
        let h = cookie_header(&s.issue("subj", Duration::from_secs(60), UNIX_EPOCH + NOW).unwrap());
        let at = UNIX_EPOCH + NOW;
        let value = h[header::COOKIE].to_str().unwrap().to_owned();
        let (prefix, rest) = value.split_once("v1.").unwrap();
        let mut fields: Vec<String> = rest.split('.').map(str::to_owned).collect();
        // A later expiry, another subject, a flipped tag: each breaks the tag.
        let tampered = [
            {
                let mut f = fields.clone();
                f[0] = (f[0].parse::<u64>().unwrap() + 3600).to_string();
                f
            },
            {
                let mut f = fields.clone();
                f[1] = "other".into();
                f
            },
            {
                let flipped = if fields[2].starts_with('A') { "B" } else { "A" };
                fields[2].replace_range(0..1, flipped);
                fields.clone()
            },
        ];
        for f in tampered {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(&format!("{prefix}v1.{}", f.join("."))).unwrap());
            assert_eq!(s.check(&h, at), None, "{f:?}");
        }
        assert_eq!(sessions(&k, "other", "turnstile").check(&h, at), None, "another upstream");
        assert_eq!(sessions(&k, "api", "jwt\ni\na").check(&h, at), None, "another proof");
        assert_eq!(sessions(&key(b"k2"), "api", "turnstile").check(&h, at), None, "another key");
    }

    #[test]
    fn garbage_cookies_are_refused_without_panicking() {
        let k = key(b"k");
        let s = sessions(&k, "api", "turnstile");
        for v in [
            "",
            "v1",
            "v1...",
            "v2.1.s.AAAA",
            "v1.x.s.AAAA",
            "v1.1.s.!!!",
            "v1.99999999999999999999.s.AAAA",
            "v1.1.s.t.extra",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}={v}")).unwrap());
            assert_eq!(s.check(&h, UNIX_EPOCH + NOW), None, "{v}");
        }
    }
}

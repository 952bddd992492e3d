//! What every relayed request to an upstream starts from, worked out once
//! from its `base_url` rather than for each request.

use base64::Engine as _;
use http::HeaderValue;
use http::uri::{Authority, Scheme};
use url::Url;

/// The parts of an upstream's `base_url` its requests are built from.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) scheme: Scheme,
    /// Host, and port unless it is the scheme's default; no user info.
    pub(crate) authority: Authority,
    /// The base path without its trailing `/`s: the segments follow it.
    pub(crate) path: Box<str>,
    /// The `Host` header (RFC 9110 §7.2): the authority, as hyper-util's
    /// client writes it when a request has none.
    pub(crate) host: HeaderValue,
    /// The URL's user info as the Basic credentials (RFC 7617) it stands
    /// for, as reqwest sent them when it made the upstream calls. Marked
    /// sensitive: never logged or shown.
    pub(crate) basic: Option<HeaderValue>,
}

impl Origin {
    /// The origin of `url`, an `http` or `https` URL with a host; the error
    /// says why an HTTP request cannot target it.
    pub(crate) fn of(url: &Url) -> Result<Self, String> {
        let host = url.host_str().ok_or("has no host")?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let authority = Authority::try_from(authority).map_err(|e| format!("host: {e}"))?;
        let scheme = Scheme::try_from(url.scheme()).map_err(|e| format!("scheme: {e}"))?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("host: {e}"))?;
        Ok(Self { scheme, authority, path: url.path().trim_end_matches('/').into(), host, basic: basic(url)? })
    }
}

/// `url`'s user info, percent-decoded, as a sensitive `Basic` header value.
fn basic(url: &Url) -> Result<Option<HeaderValue>, String> {
    let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|s| s.into_owned());
    let user = decoded(url.username()).map_err(|_| "user name: not UTF-8 once percent-decoded")?;
    let password = url.password().map(decoded).transpose().map_err(|_| "password: not UTF-8 once percent-decoded")?;
    if user.is_empty() && password.is_none() {
        return Ok(None);
    }
    let pair = format!("{user}:{}", password.unwrap_or_default());
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).map_err(|e| format!("user info: {e}"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn the_host_is_the_base_urls_host_and_a_port_other_than_the_schemes() {
        for (url, host) in [
            ("http://127.0.0.1:8080/v1", "127.0.0.1:8080"),
            ("https://api.example.com:443/v3", "api.example.com"),
            ("http://api.example.com:80", "api.example.com"),
            ("https://api.example.com:80/", "api.example.com:80"),
            ("https://api.example.com:8443/", "api.example.com:8443"),
            ("http://[::1]:3000/x", "[::1]:3000"),
            ("https://user:pw@api.example.com/", "api.example.com"),
            ("https://BÜCHER.example/", "xn--bcher-kva.example"),
        ] {
            let origin = origin(url);
            assert_eq!(origin.host, host, "{url}");
            assert_eq!(origin.authority.as_str(), host, "{url}");
        }
    }

    #[test]
    fn the_path_loses_its_trailing_slashes() {
        assert_eq!(&*origin("https://api.example.com/v3/").path, "/v3");
        assert_eq!(&*origin("https://api.example.com/v3").path, "/v3");
        assert_eq!(&*origin("https://api.example.com").path, "");
    }

    #[test]
    fn user_info_becomes_sensitive_basic_credentials() {
        let basic = origin("https://us%65r:p%40ss@api.example.com/v1").basic.expect("Basic credentials");
        assert_eq!(basic, "Basic dXNlcjpwQHNz", "user:p@ss, decoded");
        assert!(basic.is_sensitive());
        assert_eq!(origin("https://user@api.example.com/").basic.unwrap(), "Basic dXNlcjo=", "user:");
        assert_eq!(origin("https://:pw@api.example.com/").basic.unwrap(), "Basic OnB3", ":pw");
        assert_eq!(origin("http://127.0.0.1:8080/x").basic, None);
        let message = Origin::of(&Url::parse("https://%ff@api.example.com/").unwrap()).unwrap_err();
        assert!(message.contains("user name"), "{message}");
    }
}

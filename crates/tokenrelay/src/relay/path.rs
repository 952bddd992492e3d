//! The request path and query, checked before anything else, and the
//! outgoing URL built from them.
//!
//! Anything that could change what the upstream resolves is refused rather
//! than normalised: dot segments and their percent-encoded forms (WHATWG URL
//! treats `%2e` as `.`), encoded `/`, `\` and `%` (double encoding), empty
//! segments (`//`, which also catches `http://…`), `@`, backslashes, control
//! characters and anything outside RFC 3986's path characters. A segment
//! whose part before `;` is empty or a dot segment (`..;`, `.;x`) is refused
//! always, and any `;` (raw or `%3B`) unless the route sets `path_params`:
//! Tomcat, Jetty and Spring strip `;` parameters before resolving dot
//! segments, so `/images/..;/admin` is `/admin` to them. The outgoing
//! request target is then written from the parts of the configured base URL
//! ([`Origin`]): its scheme, host, port and path prefix come first, and what
//! follows them was checked here.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;

use super::error::{Kind, RelayError};
use crate::config::Origin;

/// Where the relay is mounted on every platform function.
pub const MOUNT: &str = "/api/relay";
/// WHATWG URL's special-query percent-encode set: what it encodes in the
/// query of an `http(s)` URL; of the bytes [`check_query`] lets through, only `'`.
const SPECIAL_QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>').add(b'\'');
/// More segments than any API path needs; bounds the work spent on one path.
const MAX_SEGMENTS: usize = 64;

/// Where the relay answers in a site's URL space: [`MOUNT`] by default, or
/// what a JavaScript server chose (`tokenrelay/fetch`'s `mount` option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount(Arc<str>);

impl Default for Mount {
    fn default() -> Self {
        Self(MOUNT.into())
    }
}

impl Mount {
    /// `path` as a mount: `/` and one or more segments a request path may
    /// hold (no dot segments, no encoded separators), without a trailing `/`.
    pub fn new(path: &str) -> Result<Self, String> {
        let rest = path.strip_prefix('/').ok_or_else(|| format!("{path:?} does not start with '/'"))?;
        for (i, segment) in rest.split('/').enumerate() {
            check_segment(segment).map_err(|why| format!("{path:?}: segment {}: {why}", i + 1))?;
        }
        Ok(Self(path.into()))
    }

    /// The mount's path, e.g. `/api/relay`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits `<mount>/<upstream>/<path…>` and validates every segment.
    pub(super) fn split<'p>(&self, path: &'p str) -> Result<Target<'p>, RelayError> {
        let rest = path.strip_prefix(&*self.0).and_then(|r| r.strip_prefix('/')).ok_or(Kind::NotMounted)?;
        let mut segments = rest.split('/');
        let upstream = segments.next().unwrap_or_default();
        let segments: Vec<&str> = segments.collect();
        if segments.len() >= MAX_SEGMENTS {
            return Err(rejected(format!("more than {MAX_SEGMENTS} segments")));
        }
        // Check the upstream name with the same rules, so an encoded name is refused, not looked up.
        for (i, segment) in std::iter::once(upstream).chain(segments.iter().copied()).enumerate() {
            check_segment(segment).map_err(|why| rejected(format!("segment {}: {why}", i + 1)))?;
        }
        Ok(Target { upstream, segments })
    }
}

/// A request path below the [`Mount`], split and validated.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target<'a> {
    pub(super) upstream: &'a str,
    /// Segments below the upstream, raw (percent-encodings kept as sent).
    pub(super) segments: Vec<&'a str>,
}

fn rejected(why: String) -> RelayError {
    Kind::PathRejected(why).into()
}

/// Refuses `;` path parameters (raw or percent-encoded) in any segment; for
/// routes without `path_params`.
pub(super) fn check_no_params(segments: &[&str]) -> Result<(), RelayError> {
    match segments.iter().position(|s| param_start(s).is_some()) {
        Some(i) => Err(rejected(format!(
            "segment {}: ';' path parameters are not allowed on this route (see the route's path_params)",
            i + 2
        ))),
        None => Ok(()),
    }
}

/// Where the segment's first `;` (or `%3B`) starts.
fn param_start(segment: &str) -> Option<usize> {
    let bytes = segment.as_bytes();
    (0..bytes.len()).find(|&i| match bytes[i] {
        b';' => true,
        b'%' => bytes.get(i + 1..i + 3).is_some_and(|hex| hex.eq_ignore_ascii_case(b"3b")),
        _ => false,
    })
}

fn check_segment(segment: &str) -> Result<(), String> {
    match segment {
        "" => return Err("empty segment (\"//\", a trailing '/' or an absolute URL) is not allowed".to_owned()),
        "." | ".." => return Err("\".\" and \"..\" segments are not allowed".to_owned()),
        _ => {}
    }
    // What servers that strip path parameters see of this segment.
    if let Some(head) = param_start(segment).map(|i| &segment[..i])
        && matches!(head, "" | "." | "..")
    {
        return Err(format!("\"{head}\" before ';' is a dot or empty segment to servers that strip path parameters"));
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded =
                    bytes.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
                match decoded {
                    None => return Err("'%' must be followed by two hex digits".to_owned()),
                    Some(b) if is_dangerous(b) => {
                        return Err(format!("percent-encoded {} is not allowed", describe(b)));
                    }
                    Some(_) => i += 3,
                }
            }
            b if is_path_byte(b) => i += 1,
            b => return Err(format!("{} is not allowed", describe(b))),
        }
    }
    Ok(())
}

/// RFC 3986 `pchar` minus `%` (handled separately) and `@` (userinfo lookalike).
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b)
}

/// Bytes that must not appear percent-encoded: they would change the path's
/// structure once decoded somewhere down the line.
fn is_dangerous(b: u8) -> bool {
    matches!(b, b'.' | b'/' | b'\\' | b'%' | b'@' | b'?' | b'#') || b.is_ascii_control()
}

fn describe(b: u8) -> String {
    match b {
        b'\\' => "a backslash".to_owned(),
        b'@' => "'@'".to_owned(),
        b if b.is_ascii_control() => format!("control character 0x{b:02x}"),
        b if b.is_ascii_graphic() || b == b' ' => format!("'{}'", b as char),
        b => format!("byte 0x{b:02x}"),
    }
}

/// Checks the raw query: URL query characters and valid percent-encodings only.
pub(super) fn check_query(query: &str) -> Result<(), RelayError> {
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 3,
            b'%' => return Err(Kind::QueryRejected("'%' must be followed by two hex digits".to_owned()).into()),
            b if is_path_byte(b) || b"/?@".contains(&b) => i += 1,
            b => return Err(Kind::QueryRejected(format!("{} is not allowed", describe(b))).into()),
        }
    }
    Ok(())
}

/// Refuses a query that sets `name`, the parameter the relay puts the token
/// in: the upstream might read the visitor's value instead of the relay's.
/// Servers disagree on what names one parameter, so every reading is refused:
/// `;` separates parameters too (as in HTML 4's recommendation, honoured by
/// some frameworks), also once percent-decoded (a platform that parses the
/// query and encodes it again, as `netlify dev` does, turns `a=1;x=2` into
/// `a=1%3Bx%3D2`, which a server that decodes before splitting reads as
/// before), names are percent-decoded and compared ignoring case, Unicode
/// case folding included (Java's `equalsIgnoreCase` takes `ſ` for `s`).
pub(super) fn check_param_unset(query: &str, name: &str) -> Result<(), RelayError> {
    let fold = |s: &str| s.to_uppercase().to_lowercase();
    let wanted = fold(name);
    let pairs = query.split(['&', ';']).flat_map(|pair| url::form_urlencoded::parse(pair.as_bytes()));
    let decoded = pairs.map(|(k, v)| format!("{k}={v}"));
    let mut names = decoded
        .flat_map(|pair| pair.split(';').map(|p| fold(p.split('=').next().unwrap_or_default())).collect::<Vec<_>>());
    if names.any(|n| n == wanted) {
        return Err(Kind::QueryRejected(format!("parameter \"{name}\" is set by the relay")).into());
    }
    Ok(())
}

/// `prefix`, then `/` and the segments joined by `/`, in one buffer (a
/// forwarded path is built for every relayed request and cached hit).
pub(super) fn below(prefix: &str, segments: &[&str]) -> String {
    let mut path = String::with_capacity(prefix.len() + segments.iter().map(|s| s.len() + 1).sum::<usize>() + 1);
    path.push_str(prefix);
    path.push('/');
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(segment);
    }
    path
}

/// The request target: `origin`'s scheme, authority and path, then the
/// validated segments, the checked query and the token parameter, if any.
///
/// Written straight into one buffer: each part was checked to hold only
/// what its place allows (see [`Mount::split`] and [`check_query`]), so the
/// authority and the path prefix are the origin's by construction. The
/// query is encoded as WHATWG URL encodes an `http(s)` query, as the relay
/// sent it when it built a [`url::Url`]; the tests hold the two ways equal.
pub(super) fn outgoing_uri(
    origin: &Origin,
    segments: &[&str],
    query: Option<&str>,
    param: Option<(&str, &str)>,
) -> Result<http::Uri, RelayError> {
    let query = query.filter(|q| !q.is_empty());
    let mut target = below(&origin.path, segments);
    if query.is_some() || param.is_some() {
        target.push('?');
    }
    let query_start = target.len();
    if let Some(query) = query {
        target.extend(percent_encoding::utf8_percent_encode(query, SPECIAL_QUERY));
    }
    if let Some((name, value)) = param {
        url::form_urlencoded::Serializer::for_suffix(&mut target, query_start).append_pair(name, value);
    }
    // A target that is no URI is a request that could not be made (as reqwest failed it).
    let invalid = || RelayError::from(Kind::UpstreamUnreachable("request failed: URL is not a valid URI".into()));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(origin.scheme.clone());
    parts.authority = Some(origin.authority.clone());
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|_| invalid())?);
    http::Uri::from_parts(parts).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    #[test]
    fn the_token_parameter_is_refused_however_it_is_spelled() {
        for query in [
            "access_token=x",
            "a=1&access_token=x",
            "ACCESS_TOKEN=x",
            "Access_Token=x",
            "a=1;access_token=x",
            "a=1;ACCESS_TOKEN",
            "access%5Ftoken=x",
            "acce%C5%BF%C5%BF_token=x",
            "a=1%3Baccess_token%3Dx",
            "a%3Baccess_token=x",
        ] {
            let err = check_param_unset(query, "access_token").unwrap_err();
            assert_eq!(err.code(), "query_rejected", "{query}");
        }
        for query in ["", "a=1", "access_tokens=x", "my_access_token=x", "a=access_token", "a=1%3Bb%3Daccess_token"] {
            assert!(check_param_unset(query, "access_token").is_ok(), "{query}");
        }
    }

    fn parse(path: &str) -> Result<Target<'_>, RelayError> {
        Mount::default().split(path)
    }

    fn why(path: &str) -> String {
        match parse(path) {
            Err(e) => {
                assert_eq!(e.code(), "path_rejected", "{path}: {e}");
                e.to_string()
            }
            Ok(t) => panic!("{path} was accepted as {t:?}"),
        }
    }

    #[test]
    fn splits_upstream_and_segments() {
        let t = parse("/api/relay/getty/search/images").unwrap();
        assert_eq!(t, Target { upstream: "getty", segments: vec!["search", "images"] });
        assert_eq!(parse("/api/relay/getty").unwrap().segments, Vec::<&str>::new());
    }

    #[test]
    fn a_mount_of_its_own_moves_the_relay() {
        let mount = Mount::new("/v1/relay").unwrap();
        assert_eq!(mount.as_str(), "/v1/relay");
        assert_eq!(mount.split("/v1/relay/getty/a").unwrap(), Target { upstream: "getty", segments: vec!["a"] });
        for path in ["/api/relay/getty/a", "/v1/relayx/getty", "/v1/relay"] {
            assert_eq!(mount.split(path).unwrap_err().code(), "route_not_found", "{path}");
        }
    }

    #[test]
    fn a_mount_is_a_clean_path_without_a_trailing_slash() {
        for bad in ["", "relay", "/", "/relay/", "/a//b", "/a/../b", "/a%2fb", "/a?b", "/a b"] {
            assert!(Mount::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Mount::new("relay").unwrap_err().contains("does not start with '/'"));
    }

    #[test]
    fn paths_outside_the_mount_are_not_found() {
        for path in ["/", "/api", "/api/relayx/getty/a", "/other/getty"] {
            assert_eq!(parse(path).unwrap_err().code(), "route_not_found", "{path}");
        }
    }

    #[test]
    fn dot_segments_are_rejected_in_every_spelling() {
        for path in [
            "/api/relay/getty/../admin",
            "/api/relay/getty/./search",
            "/api/relay/getty/%2e%2e/admin",
            "/api/relay/getty/%2E%2e/admin",
            "/api/relay/getty/.%2e/admin",
            "/api/relay/getty/%2e/admin",
            "/api/relay/getty/%252e%252e/admin",
            "/api/relay/%2e%2e/admin",
            "/api/relay/../etc",
        ] {
            let message = why(path);
            assert!(message.contains("segment"), "{path}: {message}");
        }
    }

    #[test]
    fn dot_segments_with_path_parameters_are_rejected_always() {
        for path in [
            "/api/relay/getty/images/..;/..;/admin",
            "/api/relay/getty/images/.;/admin",
            "/api/relay/getty/images/..;jsessionid=1/admin",
            "/api/relay/getty/images/..%3B/admin",
            "/api/relay/getty/images/;x/admin",
            "/api/relay/getty/images/%2e%2e;/admin",
        ] {
            why(path);
        }
    }

    #[test]
    fn path_parameters_are_refused_unless_the_route_opts_in() {
        let t = parse("/api/relay/getty/images/a;v=1/b").unwrap();
        let e = check_no_params(&t.segments).unwrap_err();
        assert_eq!(e.code(), "path_rejected");
        assert!(e.to_string().contains("segment 3: ';'"), "{e}");
        let t = parse("/api/relay/getty/images/a%3bv").unwrap();
        assert!(check_no_params(&t.segments).is_err());
        assert!(check_no_params(&["images", "a.b"]).is_ok());
    }

    #[test]
    fn encoded_separators_and_double_encoding_are_rejected() {
        assert!(why("/api/relay/getty/a%2fb").contains("percent-encoded '/'"));
        assert!(why("/api/relay/getty/a%2Fb").contains("percent-encoded '/'"));
        assert!(why("/api/relay/getty/a%5cb").contains("percent-encoded a backslash"));
        assert!(why("/api/relay/getty/a%252fb").contains("percent-encoded '%'"));
        assert!(why("/api/relay/getty/a%40b").contains("percent-encoded '@'"));
        assert!(why("/api/relay/getty/a%00b").contains("control character 0x00"));
        assert!(why("/api/relay/getty/a%zzb").contains("two hex digits"));
    }

    #[test]
    fn absolute_urls_userinfo_and_odd_bytes_are_rejected() {
        assert!(why("/api/relay/getty//evil.example").contains("empty segment"));
        assert!(why("/api/relay/getty/http://evil.example/x").contains("empty segment"));
        assert!(why("/api/relay/getty/search/").contains("empty segment"));
        assert!(why("/api/relay/getty/user@evil.example").contains("'@'"));
        assert!(why("/api/relay/getty/a\\b").contains("backslash"));
        assert!(why("/api/relay/getty/a\tb").contains("control character 0x09"));
        assert!(why("/api/relay/getty/a b").contains("' '"));
    }

    /// The request target `outgoing_uri` builds below `base`.
    fn uri(base: &str, segments: &[&str], query: Option<&str>, param: Option<(&str, &str)>) -> String {
        let origin = Origin::of(&Url::parse(base).unwrap()).unwrap();
        outgoing_uri(&origin, segments, query, param).unwrap().to_string()
    }

    /// The same target built the way the relay built it before, with the
    /// `url` crate (user info left out: it is sent as Basic credentials).
    /// The oracle `outgoing_uri` is held to.
    fn through_url(base: &Url, segments: &[&str], query: Option<&str>, param: Option<(&str, &str)>) -> Url {
        let mut url = base.clone();
        let _ = (url.set_username(""), url.set_password(None));
        url.set_path(&below(base.path().trim_end_matches('/'), segments));
        url.set_query(query.filter(|q| !q.is_empty()));
        if let Some((name, value)) = param {
            url.query_pairs_mut().append_pair(name, value);
        }
        url
    }

    #[test]
    fn ordinary_encodings_pass_through_unchanged() {
        let t = parse("/api/relay/getty/images/caf%C3%A9%20au%20lait").unwrap();
        assert_eq!(
            uri("https://api.example.com/v3", &t.segments, Some("phrase=a%20b&x=1"), None),
            "https://api.example.com/v3/images/caf%C3%A9%20au%20lait?phrase=a%20b&x=1"
        );
    }

    #[test]
    fn the_segments_follow_the_base_path_after_one_slash() {
        for (base, segments, want) in [
            ("https://api.example.com/v3/", &[][..], "https://api.example.com/v3/"),
            ("https://api.example.com/v3", &["a", "b"][..], "https://api.example.com/v3/a/b"),
            ("https://api.example.com", &["a"][..], "https://api.example.com/a"),
            ("https://user:pw@api.example.com:8443/v1", &["a"][..], "https://api.example.com:8443/v1/a"),
        ] {
            assert_eq!(uri(base, segments, None, None), want);
        }
        assert_eq!(below("", &[]), "/", "the forwarded path of the upstream's root");
        assert_eq!(below("", &["a", "b"]), "/a/b");
    }

    #[test]
    fn token_parameter_is_appended_encoded() {
        let base = "https://api.example.com/";
        assert_eq!(
            uri(base, &["q"], Some("a=1"), Some(("key", "k&v=w"))),
            "https://api.example.com/q?a=1&key=k%26v%3Dw"
        );
        assert_eq!(uri(base, &["q"], None, Some(("key", "k v"))), "https://api.example.com/q?key=k+v");
        assert_eq!(uri(base, &["q"], Some(""), None), "https://api.example.com/q", "an empty query is left out");
    }

    #[test]
    fn a_quote_in_the_query_is_sent_encoded_as_whatwg_url_does() {
        let want = "https://api.example.com/q?name=%27o%27&x=1";
        assert_eq!(uri("https://api.example.com", &["q"], Some("name='o'&x=1"), None), want);
        let base = Url::parse("https://api.example.com").unwrap();
        assert_eq!(through_url(&base, &["q"], Some("name='o'&x=1"), None).as_str(), want);
    }

    #[test]
    fn queries_with_raw_control_or_bad_escapes_are_rejected() {
        assert!(check_query("phrase=cats&page=2&ids=1,2").is_ok());
        assert!(check_query("a=%zz").is_err());
        assert!(check_query("a=b c").is_err());
        assert!(check_query("a=\u{7f}").is_err());
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Path pieces an attacker would try, mixed with ordinary text often
        /// enough that about a quarter of the generated targets are accepted,
        /// and so checked.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                30 => "[a-z0-9._~-]{1,6}",
                1 => Just("/".to_owned()),
                4 => "%[0-9a-fA-F]{2}",
                1 => Just(".".to_owned()),
                1 => Just("..".to_owned()),
                1 => Just("%2e".to_owned()),
                1 => Just("%2E".to_owned()),
                1 => Just("%2f".to_owned()),
                1 => Just("%5c".to_owned()),
                1 => Just("%25".to_owned()),
                1 => Just("%40".to_owned()),
                1 => Just("\\".to_owned()),
                1 => Just("@".to_owned()),
                1 => Just(":".to_owned()),
                1 => Just("//".to_owned()),
                1 => Just("http:".to_owned()),
                1 => Just("evil.example:8080".to_owned()),
                1 => Just("?".to_owned()),
                1 => Just("#".to_owned()),
                1 => Just("%".to_owned()),
                1 => Just("'".to_owned()),
                1 => any::<char>().prop_map(String::from),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

            #[test]
            fn no_path_or_query_changes_scheme_host_or_port(
                segments in proptest::collection::vec(proptest::collection::vec(piece(), 1..3), 1..6),
                query in proptest::collection::vec(piece(), 0..3),
                base in prop_oneof![
                    Just("https://api.example.com/v3"),
                    Just("http://127.0.0.1:8080/"),
                    Just("https://api.example.com"),
                    Just("https://user:p%40ss@[::1]:8443/v1/"),
                ],
            ) {
                let base = Url::parse(base).unwrap();
                let origin = Origin::of(&base).unwrap();
                let path = format!("/api/relay/getty/{}", segments.iter().map(|s| s.concat()).collect::<Vec<_>>().join("/"));
                let query = query.concat();
                if let Ok(target) = parse(&path)
                    && check_query(&query).is_ok()
                {
                    let param = Some(("key", query.as_str()));
                    let uri = outgoing_uri(&origin, &target.segments, Some(&query), param)
                        .expect("a validated path and query always make a request target");
                    let oracle = through_url(&base, &target.segments, Some(&query), param);
                    prop_assert_eq!(uri.to_string(), oracle.as_str());
                    prop_assert_eq!(uri.scheme_str(), Some(base.scheme()));
                    prop_assert_eq!(uri.host(), base.host_str());
                    prop_assert_eq!(uri.port_u16(), base.port());
                    let prefix = format!("{}/", base.path().trim_end_matches('/'));
                    prop_assert!(uri.path().starts_with(&prefix), "{} is not below {}", uri, prefix);
                    // What was matched is what is sent: no segment was added, dropped or re-split.
                    let sent: Vec<_> = uri.path()[prefix.len()..].split('/').filter(|s| !s.is_empty()).collect();
                    prop_assert_eq!(sent, target.segments);
                }
            }
        }
    }
}

//! What each hosting platform tells a function about a request, declared
//! once: the Vercel and Netlify functions read these headers, and the npm
//! addon exports them to `tokenrelay/fetch` (`platforms()`), so no shell
//! spells a platform's header itself.
//!
//! The visitor's address from any of them goes through one rule,
//! [`ClientIp::first_of`](crate::relay::ClientIp::first_of).

use http::HeaderName;

/// A platform and the request headers it sets itself, replacing whatever
/// the visitor sent under the same names. The names are `HeaderName`s: a
/// lookup by text parses the name on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Its name in `tokenrelay/fetch`'s options (`clientIp: "vercel"`).
    pub name: &'static str,
    /// The environment variable the platform sets in its functions, by which
    /// `tokenrelay/fetch` recognises where it runs.
    pub env_var: &'static str,
    /// The visitor's address, from the connection.
    pub client_ip_header: HeaderName,
    /// The platform's id of the request, for the log line.
    pub request_id_header: HeaderName,
}

/// Vercel: <https://vercel.com/docs/headers/request-headers>.
pub const VERCEL: Platform = Platform {
    name: "vercel",
    env_var: "VERCEL",
    client_ip_header: HeaderName::from_static("x-real-ip"),
    request_id_header: HeaderName::from_static("x-vercel-id"),
};

/// Netlify: <https://docs.netlify.com/routing/headers/#netlify-request-headers>.
/// Its Lambda-compatible functions get the request id in the invocation's
/// context instead; Functions v2 see the header.
pub const NETLIFY: Platform = Platform {
    name: "netlify",
    env_var: "NETLIFY",
    client_ip_header: HeaderName::from_static("x-nf-client-connection-ip"),
    request_id_header: HeaderName::from_static("x-nf-request-id"),
};

/// Every platform, in the order `tokenrelay/fetch` looks for them.
pub const PLATFORMS: [Platform; 2] = [VERCEL, NETLIFY];

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::relay::ClientIp;

    fn ip(text: &str) -> Option<ClientIp> {
        Some(ClientIp(text.parse().unwrap()))
    }

    #[test]
    fn a_repeated_client_ip_header_counts_its_first_address() {
        let mut headers = HeaderMap::new();
        headers.append(VERCEL.client_ip_header, "203.0.113.1".parse().unwrap());
        headers.append(VERCEL.client_ip_header, "198.51.100.2".parse().unwrap());
        assert_eq!(ClientIp::from_header(&headers, VERCEL.client_ip_header), ip("203.0.113.1"));
        // As Node and the Fetch API hand the same two fields over: joined.
        assert_eq!(ClientIp::first_of("203.0.113.1, 198.51.100.2"), ip("203.0.113.1"));
        assert_eq!(ClientIp::first_of(" 2001:db8::1 ,203.0.113.1"), ip("2001:db8::1"));
        assert_eq!(ClientIp::first_of("unknown, 203.0.113.1"), None, "never a later, visitor-written value");
        assert_eq!(ClientIp::first_of(""), None);
    }
}

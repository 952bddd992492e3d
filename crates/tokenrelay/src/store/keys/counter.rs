//! The shared counters of the rate limits and budgets (`relay::rate_limit`):
//! one per bucket and fixed window, holding the window's total.

use super::{KeyNamer, PREFIX};

/// The rate counter of `client` on `upstream` in fixed window number
/// `window`; the client's address is never named in clear.
pub(crate) fn rate(namer: &KeyNamer, upstream: &str, client: &str, window: u64) -> String {
    format!("{PREFIX}:rate:{upstream}:{}:{window}", namer.hash(client))
}

/// The budget counter of `upstream` (or of its route `route`, a path
/// pattern: not a secret, but hashed to keep names short and plain) in
/// fixed window number `window`.
pub(crate) fn budget(namer: &KeyNamer, upstream: &str, route: Option<&str>, window: u64) -> String {
    let scope = route.map_or_else(|| "*".to_owned(), |r| namer.hash(r));
    format!("{PREFIX}:budget:{upstream}:{scope}:{window}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::cooldown;

    #[test]
    fn rate_keys_separate_upstreams_clients_and_windows_without_naming_the_address() {
        let n = KeyNamer::new(b"k");
        assert_ne!(rate(&n, "getty", "203.0.113.7", 1), rate(&n, "getty", "2001:db8::/64", 1));
        assert_ne!(rate(&n, "getty", "203.0.113.7", 1), rate(&n, "other", "203.0.113.7", 1));
        assert_ne!(rate(&n, "getty", "203.0.113.7", 1), rate(&n, "getty", "203.0.113.7", 2));
        assert!(!rate(&n, "getty", "203.0.113.7", 1).contains("203.0.113.7"));
    }

    #[test]
    fn budget_keys_separate_upstreams_routes_and_windows() {
        let n = KeyNamer::new(b"k");
        assert_eq!(budget(&n, "getty", None, 7), "tokenrelay:v1:budget:getty:*:7");
        assert_ne!(budget(&n, "getty", Some("/search/**"), 7), budget(&n, "getty", None, 7));
        assert_ne!(budget(&n, "getty", Some("/search/**"), 7), budget(&n, "getty", Some("/images/**"), 7));
        assert_eq!(cooldown::key(&n, "getty", None), "tokenrelay:v1:cooldown:getty");
        let route = cooldown::key(&n, "getty", Some("/search/**"));
        assert!(route.starts_with("tokenrelay:v1:cooldown:getty:"), "{route}");
        assert_ne!(route, cooldown::key(&n, "getty", Some("/images/**")), "each route pattern its own");
    }
}

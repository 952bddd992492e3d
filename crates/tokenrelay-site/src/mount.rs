//! Which of a site's routes are the relay's: a rule that covers the relay's
//! paths conflicts with the route `init` or the Netlify plugin adds.

use tokenrelay::relay::MOUNT;

/// Whether a route pattern of the site (a Netlify redirect's `from`, a
/// Vercel rewrite's `source`) covers the relay's paths: [`MOUNT`] itself or
/// a path under it, not one that merely starts with the same letters
/// (`/api/relay-status` is another route of the site).
pub fn claims_mount(pattern: &str) -> bool {
    pattern.strip_prefix(MOUNT).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_mount_and_paths_under_it_are_the_relays() {
        for relay in ["/api/relay", "/api/relay/*", "/api/relay/:path*", "/api/relay/getty/*"] {
            assert!(claims_mount(relay), "{relay}");
        }
        for other in ["/api/relay-status", "/api/relays/*", "/api/rela", "/*", "/api/relay.json"] {
            assert!(!claims_mount(other), "{other}");
        }
    }
}

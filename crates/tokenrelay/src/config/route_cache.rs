//! A route's response cache (`cache = { ttl = "5m", … }` on a route), see
//! `relay::cache`. Names follow RFC 5861's `stale-while-revalidate` and
//! `stale-if-error`, so a config reads like the HTTP it configures.

use std::time::Duration;

use serde::Deserialize;

/// Longest `ttl` (and stale window) accepted: a day-long answer is already
/// a choice the operator should make with a purge plan.
const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// `cache = { ttl = "5m", stale_while_revalidate = "1h", stale_if_error = "1d", override = false }`.
/// Durations are read as text so that a bad one is reported with its field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a cache table like { ttl = \"5m\" }")]
pub(super) struct RawRouteCache {
    ttl: Option<String>,
    stale_while_revalidate: Option<String>,
    stale_if_error: Option<String>,
    #[serde(default, rename = "override")]
    override_upstream: bool,
}

/// How long a route's answers are kept and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteCache {
    /// Fresh for this long after it was fetched.
    pub(crate) ttl: Duration,
    /// After `ttl`, served at once for this long while one refresh runs.
    pub(crate) stale_while_revalidate: Duration,
    /// After `ttl`, served for this long when the upstream fails.
    pub(crate) stale_if_error: Duration,
    /// Store answers the upstream marks `no-store` or `private`.
    pub(crate) override_upstream: bool,
}

impl RouteCache {
    /// The longest [`lifetime`](Self::lifetime) any route may have: `ttl`
    /// plus a stale window, each at most [`MAX_WINDOW`].
    pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(2 * MAX_WINDOW.as_secs());

    /// How long the store keeps an entry: as long as any window may serve it.
    pub(crate) fn lifetime(&self) -> Duration {
        self.ttl + self.stale_while_revalidate.max(self.stale_if_error)
    }
}

/// Validates `raw`; each problem is `(field below cache, message)`.
pub(super) fn parse(raw: RawRouteCache) -> Result<RouteCache, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let mut window = |field: &'static str, text: Option<String>, min: Duration| {
        let Some(text) = text else { return Duration::ZERO };
        let Ok(d) = humantime::parse_duration(&text) else {
            problems.push((field, format!("\"{text}\" is not a duration, e.g. \"30s\", \"5m\", \"1h\", \"1d\"")));
            return Duration::ZERO;
        };
        if d > MAX_WINDOW {
            problems.push((field, format!("must be at most {}", humantime::format_duration(MAX_WINDOW))));
        } else if d < min {
            problems.push((field, "must be at least 1s".to_owned()));
        }
        d
    };
    let ttl_missing = raw.ttl.is_none();
    let ttl = window("ttl", raw.ttl, Duration::from_secs(1));
    let stale_while_revalidate = window("stale_while_revalidate", raw.stale_while_revalidate, Duration::ZERO);
    let stale_if_error = window("stale_if_error", raw.stale_if_error, Duration::ZERO);
    if ttl_missing {
        problems.insert(0, ("ttl", "is required, e.g. ttl = \"5m\"".to_owned()));
    }
    if problems.is_empty() {
        Ok(RouteCache { ttl, stale_while_revalidate, stale_if_error, override_upstream: raw.override_upstream })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};
    use crate::error::Error;

    fn config(cache: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            "[upstreams.api]\nbase_url = \"https://api.example.com\"\ntoken = {{ type = \"static\", key = {{ env = \"K\" }} }}\n\
             [upstreams.api.relay]\nroutes = [{{ path = \"/items/**\", cache = {cache} }}]\n"
        );
        match Config::parse(&text, "tokenrelay.toml", &Env::from_pairs([("K", "key")])) {
            Ok(c) => Ok(c),
            Err(Error::ConfigInvalid { problems, .. }) => Err(problems),
            Err(other) => panic!("expected config_invalid, got {other:?}"),
        }
    }

    #[test]
    fn cache_settings_parse_with_optional_windows() {
        let c = config("{ ttl = \"5m\", stale_while_revalidate = \"1h\", stale_if_error = \"1d\", override = true }")
            .unwrap();
        let route = &c.upstreams["api"].relay.as_ref().unwrap().routes[0];
        let cache = route.cache.unwrap();
        assert_eq!(cache.ttl.as_secs(), 300);
        assert_eq!(cache.lifetime().as_secs(), 300 + 86_400);
        assert!(cache.override_upstream);
        let c = config("{ ttl = \"30s\" }").unwrap();
        let cache = c.upstreams["api"].relay.as_ref().unwrap().routes[0].cache.unwrap();
        assert_eq!((cache.stale_while_revalidate.as_secs(), cache.override_upstream), (0, false));
    }

    #[test]
    fn bad_cache_settings_name_upstream_route_and_field() {
        let p = config("{ stale_if_error = \"1d\" }").unwrap_err();
        assert_eq!(p, ["upstream \"api\": relay.routes[0].cache.ttl: is required, e.g. ttl = \"5m\""]);
        let p = config("{ ttl = \"0s\", stale_while_revalidate = \"400d\" }").unwrap_err();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("relay.routes[0].cache.ttl: must be at least 1s"), "{p:?}");
        assert!(p[1].contains("relay.routes[0].cache.stale_while_revalidate: must be at most"), "{p:?}");
        let p = config("{ ttl = \"5m\", max_age = \"1m\" }").unwrap_err();
        assert!(p[0].contains("max_age"), "{p:?}");
        let p = config("{ ttl = \"soon\" }").unwrap_err();
        assert!(p[0].contains("relay.routes[0].cache.ttl: \"soon\" is not a duration"), "{p:?}");
    }
}

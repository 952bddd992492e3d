//! The upstream's own limits, shared by every instance.
//!
//! When the upstream asks its caller to wait (a `429` or `503` with
//! `Retry-After`, RFC 9110 §10.2.3 and §15.5.30/§15.6.4), or its rate-limit
//! headers say nothing is left (`RateLimit: …;r=0;t=N`, IETF
//! draft-ietf-httpapi-ratelimit-headers; `RateLimit-Remaining: 0` with
//! `RateLimit-Reset`, the draft's earlier form; `X-RateLimit-Remaining: 0`
//! with `X-RateLimit-Reset`, in seconds or as a Unix time, as GitHub sends
//! it), the relay stops calling it until then, for at most
//! [`MAX_COOLDOWN`]. Each cooldown is kept in memory and shared in the store
//! under its key (its end, stored until then), so that a cold instance
//! learns it in the round trip it makes anyway and a warm one with its next
//! sync.
//!
//! # Scope
//! A cooldown covers the route pattern whose call got the answer, unless
//! the answer speaks for the whole service, or the upstream's relay section
//! says `cooldown = "upstream"`. Rate-limit headers with nothing remaining
//! describe the caller's quota (the site's key), which every route spends:
//! they cool down the whole upstream. A bare `429` or `503` with
//! `Retry-After` says only that this request was refused: many APIs refuse
//! per resource or per query (a search too broad, one image's own quota),
//! and the path is the visitor's to choose, so it cools down its route
//! pattern alone: a visitor cannot silence the upstream's other routes.
//!
//! Every number here comes from an upstream or the store: arithmetic is
//! checked or saturating (the lint below keeps it so), and a time too far to
//! represent is as good as [`MAX_COOLDOWN`].

#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, StatusCode};

use crate::clock::{millis, now_ms};
use crate::relay::TrustedKeyMap;

use super::counter::SyncReads;
use super::error::{Kind, RelayError};
use crate::broker::Broker;
use crate::config::relay::CooldownScope;
use crate::store::keys::cooldown;

/// The longest the relay believes an upstream's request to wait: a bad
/// header (a date years away) must not shut the upstream off for longer.
pub(crate) const MAX_COOLDOWN: Duration = Duration::from_secs(3600);
/// `X-RateLimit-Reset` values at least this large are Unix times, not
/// seconds to wait (a wait of 31 years is no wait anyone means).
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// Every relayed upstream's cooldowns as this instance knows them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cooldowns {
    upstreams: Arc<TrustedKeyMap<String, Scopes>>,
}

/// One upstream's cooldowns: its own, and each route pattern's.
#[derive(Debug)]
struct Scopes {
    /// `cooldown = "upstream"`: every wait covers the whole upstream.
    whole_only: bool,
    upstream: Cooldown,
    /// By route pattern.
    routes: TrustedKeyMap<String, Cooldown>,
}

/// What an answer asking to wait covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The route pattern the call was made on.
    Route,
    /// Every route of the upstream.
    Upstream,
}

/// How long an answer asked to wait, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wait {
    pub(super) time: Duration,
    pub(super) scope: Scope,
}

#[derive(Debug)]
struct Cooldown {
    /// Where the store shares it.
    key: String,
    /// When it ends, in ms since the epoch (0: none known).
    until_ms: AtomicU64,
}

/// A cooldown to share: its key, its end (ms since the epoch) and how long from now.
pub(super) struct Share {
    pub(super) key: String,
    pub(super) until_ms: u64,
    pub(super) ttl: Duration,
    /// Whether it is the route's own cooldown, not the whole upstream's.
    pub(super) on_route: bool,
}

impl Cooldowns {
    /// One per relayed upstream of `broker`'s config, and one per route pattern.
    pub(super) fn new(broker: &Broker) -> Self {
        let store = broker.store();
        let cooldown = |route: Option<&str>, name: &str| Cooldown {
            key: cooldown::key(store.namer(), name, route),
            until_ms: AtomicU64::new(0),
        };
        let upstreams = broker
            .config()
            .upstreams
            .iter()
            .filter_map(|(name, u)| Some((name, u.relay.as_ref()?)))
            .map(|(name, relay)| {
                let routes = relay
                    .routes
                    .iter()
                    .map(|r| (r.pattern.as_str().to_owned(), cooldown(Some(r.pattern.as_str()), name)))
                    .collect();
                let whole_only = relay.cooldown == CooldownScope::Upstream;
                (name.clone(), Scopes { whole_only, upstream: cooldown(None, name), routes })
            })
            .collect();
        Self { upstreams: Arc::new(upstreams) }
    }

    /// The keys covering `route` of `upstream` (its own and the upstream's),
    /// to read with a cold request's round trip.
    pub(super) fn key(&self, upstream: &str, route: &str) -> Vec<&str> {
        self.covering(upstream, route).map(|c| c.key.as_str()).collect()
    }

    /// Learns the stored `values` of `keys`; a value that is not a time is ignored.
    pub(super) fn learn(&self, keys: &[&str], values: &[Option<String>]) {
        for (key, value) in keys.iter().zip(values) {
            let until = value.as_deref().and_then(|v| v.parse::<u64>().ok());
            let known = self.upstreams.values().flat_map(Scopes::all).find(|c| c.key == *key);
            if let (Some(c), Some(until)) = (known, until) {
                c.until_ms.fetch_max(until.min(now_ms().saturating_add(millis(MAX_COOLDOWN))), Ordering::AcqRel);
            }
        }
    }

    /// Refuses a call on `route` of `upstream` while it or its route cools
    /// down: 503 with `Retry-After`.
    pub(super) fn check(&self, upstream: &str, route: &str) -> Result<(), RelayError> {
        let now = now_ms();
        let until = self.covering(upstream, route).map(|c| c.until_ms.load(Ordering::Acquire)).max().unwrap_or(0);
        let left = until.saturating_sub(now);
        if left == 0 {
            return Ok(());
        }
        Err(Kind::UpstreamCoolingDown { retry_after: Duration::from_millis(left) }.into())
    }

    /// Starts a cooldown when the answer to a call on `route` of `upstream`
    /// asks to wait: the route's, or the upstream's (see the module's
    /// *Scope*); what to share, if so.
    pub(super) fn note(&self, upstream: &str, route: &str, status: StatusCode, headers: &HeaderMap) -> Option<Share> {
        let scopes = self.upstreams.get(upstream)?;
        let wait = asked_to_wait(status, headers, SystemTime::now())?;
        let own = scopes.routes.get(route).filter(|_| wait.scope == Scope::Route && !scopes.whole_only);
        let (c, scope) = own.map_or((&scopes.upstream, "upstream"), |c| (c, "route"));
        let until_ms = now_ms().saturating_add(millis(wait.time));
        c.until_ms.fetch_max(until_ms, Ordering::AcqRel);
        tracing::warn!(
            upstream,
            route,
            scope,
            wait_ms = millis(wait.time),
            "upstream asked to wait; no instance calls it there until then"
        );
        Some(Share { key: c.key.clone(), until_ms, ttl: wait.time, on_route: own.is_some() })
    }

    /// The cooldowns covering `route` of `upstream`.
    fn covering<'a>(&'a self, upstream: &str, route: &str) -> impl Iterator<Item = &'a Cooldown> {
        let scopes = self.upstreams.get(upstream);
        let own = scopes.and_then(|s| s.routes.get(route));
        scopes.map(|s| &s.upstream).into_iter().chain(own)
    }
}

/// Every sync of the shared counters reads every upstream's cooldown: a
/// warm instance learns them without a store call of its own.
impl SyncReads for Cooldowns {
    fn keys(&self) -> Vec<&str> {
        self.upstreams.values().flat_map(Scopes::all).map(|c| c.key.as_str()).collect()
    }

    fn learn(&self, keys: &[&str], values: &[Option<String>]) {
        Cooldowns::learn(self, keys, values);
    }
}

impl Scopes {
    fn all(&self) -> impl Iterator<Item = &Cooldown> {
        std::iter::once(&self.upstream).chain(self.routes.values())
    }
}

/// How long the upstream asked to be left alone, capped at [`MAX_COOLDOWN`],
/// and what for: the whole upstream when a rate-limit header says its quota
/// is spent, else the route (see the module's *Scope*); `None` when it did
/// not ask (or the time is already past).
pub(super) fn asked_to_wait(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Wait> {
    let refused = status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
    let retry_after = refused.then(|| retry_after(headers, now)).flatten();
    let quota = draft_ratelimit(headers)
        .or_else(|| remaining_and_reset(headers, "ratelimit-remaining", "ratelimit-reset", now))
        .or_else(|| remaining_and_reset(headers, "x-ratelimit-remaining", "x-ratelimit-reset", now));
    let scope = if quota.is_some() { Scope::Upstream } else { Scope::Route };
    let time = retry_after.or(quota)?;
    (!time.is_zero()).then(|| Wait { time: time.min(MAX_COOLDOWN), scope })
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = header(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value).ok()?.duration_since(now).ok()
}

/// `RateLimit: "default";r=0;t=30` (draft-ietf-httpapi-ratelimit-headers-08
/// §3): any listed limit with nothing remaining, the longest reset.
fn draft_ratelimit(headers: &HeaderMap) -> Option<Duration> {
    let value = header(headers, "ratelimit")?;
    value
        .split(',')
        .filter_map(|item| {
            let params = item.split(';').skip(1).filter_map(|p| p.trim().split_once('='));
            let (mut r, mut t) = (None, None);
            for (name, v) in params {
                match name.trim() {
                    "r" => r = v.trim().parse::<u64>().ok(),
                    "t" => t = v.trim().parse::<u64>().ok(),
                    _ => {}
                }
            }
            (r? == 0).then_some(Duration::from_secs(t?))
        })
        .max()
}

/// `<remaining>: 0` with `<reset>`: seconds to wait, or a Unix time.
fn remaining_and_reset(
    headers: &HeaderMap,
    remaining: &'static str,
    reset: &'static str,
    now: SystemTime,
) -> Option<Duration> {
    if header(headers, remaining)?.parse::<u64>().ok()? != 0 {
        return None;
    }
    let reset = Duration::from_secs(header(headers, reset)?.parse::<u64>().ok()?);
    if reset.as_secs() < EPOCH_THRESHOLD {
        return Some(reset);
    }
    // A Unix time the clock cannot represent is later than any cap.
    UNIX_EPOCH.checked_add(reset).map_or(Some(Duration::MAX), |at| at.duration_since(now).ok())
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Option<&'h str> {
    headers.get(HeaderName::from_static(name))?.to_str().ok().map(str::trim)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, reason = "expected values from the tests' own small numbers")]
mod tests {
    use super::*;

    /// The tests' "now": 2023-11-14 22:13:20 UTC.
    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn wait(status: u16, pairs: &[(&'static str, &str)]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), value.parse().unwrap());
        }
        asked_to_wait(StatusCode::from_u16(status).unwrap(), &headers, UNIX_EPOCH + NOW).map(|w| w.time)
    }

    fn scope(status: u16, pairs: &[(&'static str, &str)]) -> Option<Scope> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), value.parse().unwrap());
        }
        asked_to_wait(StatusCode::from_u16(status).unwrap(), &headers, UNIX_EPOCH + NOW).map(|w| w.scope)
    }

    #[test]
    fn a_spent_quota_covers_the_upstream_and_a_bare_refusal_its_route() {
        assert_eq!(scope(429, &[("retry-after", "30")]), Some(Scope::Route), "this request was refused");
        assert_eq!(scope(503, &[("retry-after", "30")]), Some(Scope::Route));
        assert_eq!(scope(200, &[("ratelimit", "\"default\";r=0;t=12")]), Some(Scope::Upstream));
        assert_eq!(scope(200, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "20")]), Some(Scope::Upstream));
        let spent = [("retry-after", "30"), ("ratelimit-remaining", "0"), ("ratelimit-reset", "30")];
        assert_eq!(scope(429, &spent), Some(Scope::Upstream), "the key's quota is spent");
        let left = [("retry-after", "30"), ("x-ratelimit-remaining", "40"), ("x-ratelimit-reset", "30")];
        assert_eq!(scope(429, &left), Some(Scope::Route), "the quota has room: this request alone was refused");
    }

    #[test]
    fn retry_after_on_429_or_503_in_seconds_or_as_a_date() {
        assert_eq!(wait(429, &[("retry-after", "30")]), Some(Duration::from_secs(30)));
        assert_eq!(wait(503, &[("retry-after", "Tue, 14 Nov 2023 22:14:20 GMT")]), Some(Duration::from_secs(60)));
        assert_eq!(wait(200, &[("retry-after", "30")]), None, "a 200's Retry-After asks nothing");
        assert_eq!(wait(429, &[]), None, "no time given: nothing to wait for");
        assert_eq!(wait(429, &[("retry-after", "Tue, 14 Nov 2023 22:00:00 GMT")]), None, "already past");
        assert_eq!(wait(429, &[("retry-after", "soon")]), None);
    }

    #[test]
    fn rate_limit_headers_with_nothing_left_ask_to_wait() {
        assert_eq!(wait(200, &[("ratelimit", "\"default\";r=0;t=12")]), Some(Duration::from_secs(12)));
        assert_eq!(wait(200, &[("ratelimit", "\"default\";r=5;t=12")]), None);
        assert_eq!(wait(200, &[("ratelimit-remaining", "0"), ("ratelimit-reset", "7")]), Some(Duration::from_secs(7)));
        let epoch = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000090")];
        assert_eq!(wait(200, &epoch), Some(Duration::from_secs(90)), "GitHub's Unix time");
        let secs = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "20")];
        assert_eq!(wait(200, &secs), Some(Duration::from_secs(20)));
        assert_eq!(wait(200, &[("x-ratelimit-remaining", "3"), ("x-ratelimit-reset", "20")]), None);
    }

    #[test]
    fn a_cooldown_never_lasts_longer_than_the_cap() {
        assert_eq!(wait(429, &[("retry-after", "99999999")]), Some(MAX_COOLDOWN));
    }

    #[test]
    fn resets_beyond_the_clock_are_capped_not_a_panic() {
        for reset in [u64::MAX.to_string(), (1u64 << 63).to_string(), (u64::MAX / 1000).to_string()] {
            for (remaining, reset_name) in
                [("x-ratelimit-remaining", "x-ratelimit-reset"), ("ratelimit-remaining", "ratelimit-reset")]
            {
                assert_eq!(wait(200, &[(remaining, "0"), (reset_name, &reset)]), Some(MAX_COOLDOWN), "{reset}");
            }
            assert_eq!(wait(429, &[("retry-after", &reset)]), Some(MAX_COOLDOWN), "{reset}");
            assert_eq!(wait(200, &[("ratelimit", &format!("\"q\";r=0;t={reset}"))]), Some(MAX_COOLDOWN));
        }
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        /// What an upstream may put in a limit header: the extremes, past
        /// `u64`, negative, not a number, and HTTP-dates from year 0 to 9999.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("0".to_owned()),
                Just(u64::MAX.to_string()),
                Just((1u64 << 63).to_string()),
                Just("18446744073709551616".to_owned()),
                Just("-1".to_owned()),
                Just(" 12 ".to_owned()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                (0u64..10_000_000_000).prop_map(|n| n.to_string()),
                "[ -~]{0,24}",
                http_date(),
            ]
        }

        /// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7) for any year
        /// from 0 to 9999, its weekday right or wrong.
        fn http_date() -> impl Strategy<Value = String> {
            const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            (0usize..7, 1u8..=31, 0usize..12, 0u16..=9999, 0u8..24, 0u8..60, 0u8..61).prop_map(
                |(wd, day, mon, year, h, m, s)| {
                    format!("{}, {day:02} {} {year:04} {h:02}:{m:02}:{s:02} GMT", DAYS[wd], MONTHS[mon])
                },
            )
        }

        fn name() -> impl Strategy<Value = &'static str> {
            prop_oneof![
                Just("retry-after"),
                Just("ratelimit"),
                Just("ratelimit-remaining"),
                Just("ratelimit-reset"),
                Just("x-ratelimit-remaining"),
                Just("x-ratelimit-reset"),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

            /// Whatever the headers say, the relay waits between nothing and the cap.
            #[test]
            fn any_limit_headers_give_a_wait_within_the_cap(
                status in prop_oneof![Just(200u16), Just(429), Just(503)],
                headers in proptest::collection::vec((name(), value()), 0..6),
                draft in (value(), value()),
            ) {
                let mut pairs: Vec<(&'static str, String)> = headers;
                pairs.push(("ratelimit", format!("\"q\";r={};t={}", draft.0, draft.1)));
                let pairs: Vec<(&'static str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
                if let Some(wait) = wait(status, &pairs) {
                    prop_assert!(!wait.is_zero() && wait <= MAX_COOLDOWN, "{wait:?}");
                }
            }

            /// A reset given as a Unix time is waited for until then, at most the cap.
            #[test]
            fn a_unix_time_reset_is_waited_for_until_then(ahead in 0u64..u64::MAX - NOW.as_secs()) {
                let reset = (NOW.as_secs() + ahead).to_string();
                let expected = (ahead > 0).then(|| Duration::from_secs(ahead).min(MAX_COOLDOWN));
                prop_assert_eq!(wait(200, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)]), expected);
            }
        }
    }
}

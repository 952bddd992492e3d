//! The usage meter's tallies (`relay::meter`), per upstream and route: an
//! hour's hash, a day's hash, and an hour's estimate of distinct clients.
//!
//! An hour's hash holds, for each metric, the hour's total under the
//! metric's name and each minute's under `name@mm` (`mm` the minute of the
//! hour, `00`–`59`); a day's hash holds the day's totals. Hours and days are
//! UTC, numbered from the Unix epoch. The estimate (a HyperLogLog) holds the
//! keyed hashes of the clients the rate limits count ([`client`]), never an
//! address. Requests refused before their upstream was known are the
//! upstream [`UNKNOWN`]'s; before their route was, the upstream's without a
//! route.

use std::time::Duration;

use super::{KeyNamer, PREFIX};

/// The upstream name of requests refused before an upstream was known
/// (a foreign origin, an unknown upstream): not a valid upstream name.
pub(crate) const UNKNOWN: &str = "*";
/// How long an hour's tallies are kept: 7 days.
pub(crate) const HOURS_KEPT: Duration = Duration::from_secs(7 * 86_400);
/// How long a day's tallies are kept: 90 days.
pub(crate) const DAYS_KEPT: Duration = Duration::from_secs(90 * 86_400);
/// Milliseconds in an hour and in a day.
pub(crate) const HOUR_MS: u64 = 3_600_000;
pub(crate) const DAY_MS: u64 = 86_400_000;

/// Where `upstream`'s tallies of `route` (a pattern; `None` for requests
/// without a route) live; routes hashed to keep names short, like budgets'.
fn scope(namer: &KeyNamer, upstream: &str, route: Option<&str>) -> String {
    let route = route.map_or_else(|| "*".to_owned(), |r| namer.hash(r));
    format!("{PREFIX}:meter:{upstream}:{route}")
}

/// The hash of hour number `hour` (since the epoch).
pub(crate) fn hour(namer: &KeyNamer, upstream: &str, route: Option<&str>, hour: u64) -> String {
    format!("{}:h:{hour}", scope(namer, upstream, route))
}

/// The hash of day number `day` (since the epoch).
pub(crate) fn day(namer: &KeyNamer, upstream: &str, route: Option<&str>, day: u64) -> String {
    format!("{}:d:{day}", scope(namer, upstream, route))
}

/// The distinct clients' estimate of hour number `hour`.
pub(crate) fn clients(namer: &KeyNamer, upstream: &str, route: Option<&str>, hour: u64) -> String {
    format!("{}:u:{hour}", scope(namer, upstream, route))
}

/// A client, by the name the rate limits give it, as the estimate holds it:
/// the keyed hash its rate counter key names it by.
pub(crate) fn client(namer: &KeyNamer, name: &str) -> String {
    namer.hash(name)
}

/// A minute's field of `metric` in an hour's hash.
pub(crate) fn minute_field(metric: &str, minute_of_hour: u64) -> String {
    format!("{metric}@{minute_of_hour:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::counter;

    #[test]
    fn meter_keys_separate_upstreams_routes_and_periods_and_name_no_client() {
        let n = KeyNamer::new(b"k");
        assert_eq!(hour(&n, "getty", None, 7), "tokenrelay:v1:meter:getty:*:h:7");
        assert_ne!(hour(&n, "getty", Some("/search/**"), 7), hour(&n, "getty", None, 7));
        assert_ne!(hour(&n, "getty", Some("/search/**"), 7), day(&n, "getty", Some("/search/**"), 7));
        assert_ne!(hour(&n, "getty", None, 7), clients(&n, "getty", None, 7));
        let hashed = client(&n, "203.0.113.7");
        assert!(!hashed.contains("203"), "{hashed}");
        assert!(counter::rate(&n, "getty", "203.0.113.7", 1).contains(&hashed), "the rate limits' own hash");
        assert_eq!(minute_field("calls", 5), "calls@05");
    }
}

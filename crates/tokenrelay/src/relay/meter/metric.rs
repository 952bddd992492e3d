//! What the meter counts, and each count's field name in the store
//! (`store::keys::meter`).

use std::time::Duration;

/// Upper bounds (ms) of the upstream latency histogram's buckets; a last
/// bucket takes the slower calls. p50 and p95 read as a bucket's bound.
pub(crate) const LATENCY_BOUNDS_MS: [u64; 8] = [25, 50, 100, 250, 500, 1000, 2500, 5000];

/// Field names of the histogram's buckets, in order, the slower calls' last.
pub(crate) const LATENCY_FIELDS: [&str; 9] = [
    "latency.le25",
    "latency.le50",
    "latency.le100",
    "latency.le250",
    "latency.le500",
    "latency.le1000",
    "latency.le2500",
    "latency.le5000",
    "latency.more",
];

/// Calls sent to the upstream (a 401's retry is a second).
pub(crate) const CALLS: &str = "calls";
/// Tokens fetched from the token endpoint (each a rotation), and fetches that failed.
pub(crate) const TOKEN_FETCHES: &str = "token.fetch";
pub(crate) const TOKEN_FAILURES: &str = "token.failure";
/// Answers from the cache, by kind, in the order reports show them.
pub(crate) const CACHE_KINDS: [(&str, &str); 5] = [
    ("memory", "cache.memory"),
    ("store", "cache.store"),
    ("collapsed", "cache.collapsed"),
    ("stale", "cache.stale"),
    ("stale-if-error", "cache.stale-if-error"),
];
/// Answers by status class.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["status.1xx", "status.2xx", "status.3xx", "status.4xx", "status.5xx"];
/// The prefix of refusals' fields: `refused.<code>`, one per error code.
pub(crate) const REFUSED: &str = "refused.";

/// One count, as the meter keeps it in memory: a fixed name, or a refusal's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Field {
    Named(&'static str),
    Refused(&'static str),
}

impl Field {
    /// The field's name in the store.
    pub(crate) fn name(self) -> String {
        match self {
            Field::Named(name) => name.to_owned(),
            Field::Refused(code) => format!("{REFUSED}{code}"),
        }
    }

    /// The histogram bucket of a call that took `took`.
    pub(crate) fn latency(took: Duration) -> Self {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_MS.iter().position(|bound| ms <= *bound).unwrap_or(LATENCY_BOUNDS_MS.len());
        Field::Named(LATENCY_FIELDS[bucket])
    }

    /// The field of a cache answer, by its `Cache-Status` log name; none for
    /// a miss or a bypass (the call counts).
    pub(crate) fn cache(log_name: &str) -> Option<Self> {
        let kind = match log_name {
            "hit-memory" => "memory",
            "hit" => "store",
            other => other,
        };
        CACHE_KINDS.iter().find(|(k, _)| *k == kind).map(|(_, field)| Field::Named(field))
    }

    /// The field of an answer with status `status`.
    pub(crate) fn status(status: http::StatusCode) -> Self {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        Field::Named(STATUS_CLASSES[class])
    }
}

/// The bound (ms) of the bucket the `q`-quantile falls in, of a histogram's
/// counts in [`LATENCY_FIELDS`] order; `None` without calls. The slower
/// calls' bucket reads as its lower bound.
pub(crate) fn quantile_ms(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile among the calls, 1-based: ceil(q × total).
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_the_bucket_of_their_bound() {
        assert_eq!(Field::latency(Duration::from_millis(25)), Field::Named("latency.le25"));
        assert_eq!(Field::latency(Duration::from_millis(26)), Field::Named("latency.le50"));
        assert_eq!(Field::latency(Duration::from_secs(9)), Field::Named("latency.more"));
    }

    #[test]
    fn quantiles_read_as_their_buckets_bound() {
        let mut counts = [0; 9];
        counts[2] = 90; // ≤ 100 ms
        counts[5] = 10; // ≤ 1 s
        assert_eq!(quantile_ms(&counts, 0.5), Some(100));
        assert_eq!(quantile_ms(&counts, 0.9), Some(100));
        assert_eq!(quantile_ms(&counts, 0.95), Some(1000));
        assert_eq!(quantile_ms(&[0; 9], 0.5), None);
    }

    #[test]
    fn answers_are_told_by_class_and_cache_kind() {
        assert_eq!(Field::status(http::StatusCode::NOT_FOUND).name(), "status.4xx");
        assert_eq!(Field::cache("hit").map(Field::name).as_deref(), Some("cache.store"));
        assert_eq!(Field::cache("hit-memory").map(Field::name).as_deref(), Some("cache.memory"));
        assert_eq!(Field::cache("miss"), None);
        assert_eq!(Field::Refused("rate_limited").name(), "refused.rate_limited");
    }
}

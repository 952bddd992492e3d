//! Wall-clock milliseconds, the unit shared state is kept in: rate-limit
//! windows, cooldowns, cache entries and local-store expiries must line up
//! across processes and machines, so they use the Unix epoch, not `Instant`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// `d` in whole milliseconds, saturating: add it with `saturating_add`.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_wrapping() {
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(now_ms().saturating_add(millis(Duration::MAX)), u64::MAX);
        assert_eq!(millis(Duration::from_micros(1_999)), 1);
    }
}

//! When a figure is an event: each rule is a plain function of what its
//! source counted, so each threshold is tested alone.

/// Whether `calls` in the last hour are a spike against `trailing`, the
/// calls of the 24 hours before: at least `min_calls`, and more than
/// `factor` × their hourly mean. With no history the mean is 0, so the
/// minimum alone decides.
pub(crate) fn is_spike(calls: u64, trailing: u64, factor: f64, min_calls: u64) -> bool {
    // Counts far below 2^53: exact as f64.
    calls >= min_calls && calls as f64 > factor * (trailing as f64 / 24.0)
}

/// Whether `refusals` on unknown routes or rejected paths this hour mean probing.
pub(crate) fn is_probing(refusals: u64, threshold: u64) -> bool {
    refusals >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_over_the_factor_of_the_hourly_mean_and_over_the_minimum() {
        // 24 hours of 240 calls: a mean of 10 an hour.
        assert!(!is_spike(30, 240, 3.0, 10), "three times the mean is not over it");
        assert!(is_spike(31, 240, 3.0, 10));
        assert!(!is_spike(9, 0, 3.0, 10), "below the minimum, even with no history");
        assert!(is_spike(10, 0, 3.0, 10), "no history: the minimum decides");
        assert!(!is_spike(500, 24 * 200, 3.0, 10), "a busy site at its usual pace");
    }

    #[test]
    fn probing_starts_at_the_threshold() {
        assert!(!is_probing(49, 50));
        assert!(is_probing(50, 50));
    }
}

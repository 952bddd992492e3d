//! When a figure is an event: each rule is a plain function of what its
//! source counted, so each threshold is tested alone.

use super::event::AlertKind;

/// The budget events a window's count `used` of `requests` has reached: 80%
/// (rounded up, so a budget of 20 alerts at its 16th call) and 100%.
pub(crate) fn budget_levels(used: u64, requests: u64) -> impl Iterator<Item = AlertKind> {
    let eighty = requests.saturating_mul(4).div_ceil(5);
    [(eighty, AlertKind::Budget80), (requests, AlertKind::Budget100)]
        .into_iter()
        .filter(move |(at, _)| requests > 0 && used >= *at)
        .map(|(_, kind)| kind)
}

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
    fn a_budget_alerts_at_80_percent_rounded_up_and_at_its_end() {
        let levels = |used, requests| budget_levels(used, requests).collect::<Vec<_>>();
        assert!(levels(15, 20).is_empty());
        assert_eq!(levels(16, 20), [AlertKind::Budget80]);
        assert_eq!(levels(19, 20), [AlertKind::Budget80]);
        assert_eq!(levels(20, 20), [AlertKind::Budget80, AlertKind::Budget100]);
        assert_eq!(levels(1, 1), [AlertKind::Budget80, AlertKind::Budget100], "a budget of 1: 80% is its one call");
        assert!(levels(7, 9).is_empty(), "80% of 9 is 7.2: reached at the 8th call");
        assert_eq!(levels(8, 9), [AlertKind::Budget80]);
    }

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

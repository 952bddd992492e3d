//! Latency samples and their percentiles.

use std::time::Duration;

/// Latency samples, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

/// The percentiles the report uses.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Samples {
    pub fn push(&mut self, latency: Duration) {
        self.0.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Nearest-rank percentiles; `None` without samples.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            Duration::from_nanos(sorted[rank - 1])
        };
        (!sorted.is_empty()).then(|| Percentiles { p50: at(0.50), p99: at(0.99), max: at(1.0) })
    }
}

impl FromIterator<Duration> for Samples {
    fn from_iter<I: IntoIterator<Item = Duration>>(iter: I) -> Self {
        let mut samples = Samples::default();
        iter.into_iter().for_each(|d| samples.push(d));
        samples
    }
}

/// The median of a few measurements (e.g. repeated cold starts).
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

/// `a - b` in milliseconds, negative when `a` is faster.
pub fn ms_diff(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() * 1e3 - b.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Samples = (1..=100).map(Duration::from_millis).collect();
        let p = samples.percentiles().unwrap();
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let samples: Samples = [Duration::from_micros(7)].into_iter().collect();
        let p = samples.percentiles().unwrap();
        assert_eq!(
            (p.p50, p.p99, p.max),
            (Duration::from_micros(7), Duration::from_micros(7), Duration::from_micros(7))
        );
        assert!(Samples::default().percentiles().is_none());
    }

    #[test]
    fn median_of_an_odd_and_even_count() {
        let ms = |v: &[u64]| v.iter().copied().map(Duration::from_millis).collect::<Vec<_>>();
        assert_eq!(median(&ms(&[30, 10, 20])), Some(Duration::from_millis(20)));
        assert_eq!(median(&ms(&[40, 10, 30, 20])), Some(Duration::from_millis(30)));
    }
}

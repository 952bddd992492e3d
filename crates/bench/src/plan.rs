//! How much of each scenario to run: the full plan (a few minutes on 2 cores)
//! or the quick one (a smoke test of every scenario in seconds; its figures
//! are too few to quote).

use std::time::Duration;

/// How long the main upstream's tokens live, as Getty's do.
pub const MAIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);
/// What the Node baseline subtracts from the lifetime for its Redis TTL, as
/// such code usually does; tokenrelay's own default margin is the same.
pub const BASELINE_MARGIN: Duration = Duration::from_secs(60);

/// How long the relay's cached route keeps an answer (`profile --api cached`,
/// the hot path's memory-hit rows): the whole run.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

/// How long the slow upstream takes to answer: a fast real API seen from a
/// function in the same region.
pub const REAL_API_DELAY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Hot path: connections per run, each level measured separately.
    pub concurrency: &'static [usize],
    /// Hot path: rounds of each way to the API, interleaved.
    pub rounds: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Hot path once more with an upstream as slow as a real API: its delay,
    /// and the connections.
    pub slow_upstream: (Duration, usize),
    /// Cold starts of each function, alternating.
    pub cold_starts: usize,
    /// Rotation under load: token lifetime, safety margin, run length, connections.
    pub rotation_lifetime: Duration,
    pub rotation_margin: Duration,
    pub rotation_run: Duration,
    pub rotation_concurrency: usize,
    /// Stampede: worker processes × instances each.
    pub stampede_processes: usize,
    pub stampede_instances: usize,
    pub stampede_lifetime: Duration,
    pub stampede_margin: Duration,
    /// Simultaneous cold requests to one function process with an empty store.
    pub burst: usize,
    /// Samples per figure of the addon's build-time bench (`--runs`).
    pub addon_runs: usize,
}

impl Plan {
    pub fn full() -> Self {
        Plan {
            quick: false,
            concurrency: &[1, 8, 32],
            rounds: 3,
            warmup: Duration::from_millis(250),
            measure: Duration::from_millis(1250),
            slow_upstream: (REAL_API_DELAY, 32),
            cold_starts: 7,
            rotation_lifetime: Duration::from_secs(4),
            rotation_margin: Duration::from_secs(1),
            rotation_run: Duration::from_secs(9),
            rotation_concurrency: 8,
            stampede_processes: 20,
            stampede_instances: 10,
            stampede_lifetime: Duration::from_secs(4),
            stampede_margin: Duration::from_secs(1),
            burst: 200,
            addon_runs: 30,
        }
    }

    pub fn quick() -> Self {
        Plan {
            quick: true,
            concurrency: &[1, 8],
            rounds: 2,
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(300),
            slow_upstream: (REAL_API_DELAY, 8),
            cold_starts: 1,
            rotation_lifetime: Duration::from_secs(2),
            rotation_margin: Duration::from_secs(1),
            rotation_run: Duration::from_millis(2500),
            rotation_concurrency: 4,
            stampede_processes: 4,
            stampede_instances: 5,
            stampede_lifetime: Duration::from_secs(3),
            stampede_margin: Duration::from_secs(1),
            burst: 50,
            addon_runs: 3,
        }
    }

    /// Instances in the cross-process stampede.
    pub fn stampede_total(&self) -> usize {
        self.stampede_processes * self.stampede_instances
    }
}

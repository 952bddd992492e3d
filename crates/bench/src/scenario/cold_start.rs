//! Cold start: from spawning a function process to its first relayed answer,
//! with the token already in the store, plus its peak memory then and the
//! store round trips it made to get there.

use std::time::Duration;

use crate::procs::Spec;
use crate::stats::median;
use crate::world::{StoreCount, World, relay_path};

/// Repeated cold starts of one kind of function.
#[derive(Debug, Default)]
pub struct ColdStarts {
    pub first_answer: Vec<Duration>,
    pub peak_rss_kib: Vec<u64>,
    /// Store round trips from spawn to first answer.
    pub store: Vec<StoreCount>,
}

impl ColdStarts {
    pub fn median_first_answer(&self) -> Option<Duration> {
        median(&self.first_answer)
    }

    pub fn median_peak_rss_kib(&self) -> Option<u64> {
        let mut sorted = self.peak_rss_kib.clone();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied()
    }

    /// The most store round trips any cold start needed for its token.
    pub fn max_token_trips(&self) -> Option<u64> {
        self.store.iter().map(StoreCount::token).max()
    }

    /// The most store round trips any cold start made in all.
    pub fn max_trips(&self) -> Option<u64> {
        self.store.iter().map(|s| s.requests).max()
    }
}

/// `trials` cold starts of each spec, alternating so that both see the same
/// machine noise. The store must already hold each function's token.
pub async fn run(world: &World, specs: &[&Spec], trials: usize) -> anyhow::Result<Vec<ColdStarts>> {
    let mut results: Vec<ColdStarts> = specs.iter().map(|_| ColdStarts::default()).collect();
    for _ in 0..trials {
        for (spec, result) in specs.iter().zip(&mut results) {
            world.reset_store_count().await?;
            let started = spec.start(Some(&relay_path())).await?;
            result.store.push(world.store_count().await?);
            result.first_answer.push(started.first_answer);
            result.peak_rss_kib.push(started.peak_rss_kib);
        }
    }
    Ok(results)
}

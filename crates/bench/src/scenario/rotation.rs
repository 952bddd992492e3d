//! Rotation under load: short-lived tokens, steady load through one function
//! instance, for several lifetimes. Counts token-endpoint calls per rotation,
//! store round trips per rotation, and requests that met an expired token
//! (answered 401, or sent upstream again after a 401).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::TokenServer;

use super::Functions;
use crate::load::{self, Target};
use crate::plan::Plan;
use crate::procs::Spec;
use crate::world::{StoreCount, World, relay_path};

/// Token calls further apart than this belong to different rotations.
const ROTATION_GAP: Duration = Duration::from_millis(200);
/// How often the token endpoint's counter is read to timestamp its calls.
const CALL_POLL: Duration = Duration::from_millis(5);

/// One function instance under load across several token lifetimes.
#[derive(Debug)]
pub struct Rotation {
    pub token_calls: usize,
    /// Bursts of token calls, each one rotation.
    pub rotations: usize,
    pub store: StoreCount,
    /// Requests sent to the function (its first, cold one included).
    pub sent: u64,
    /// Of those, answered with anything but 2xx.
    pub failed: u64,
    /// Requests the API received.
    pub upstream_requests: u64,
}

impl Rotation {
    pub fn calls_per_rotation(&self) -> f64 {
        self.token_calls as f64 / self.rotations.max(1) as f64
    }

    /// Store round trips for the token (not the rate limit) per rotation.
    pub fn token_trips_per_rotation(&self) -> f64 {
        self.store.token() as f64 / self.rotations.max(1) as f64
    }

    /// Requests that met an expired token: answered 401 (or another failure)
    /// to the client, or replayed upstream after one.
    pub fn expired(&self) -> u64 {
        self.failed + self.upstream_requests.saturating_sub(self.sent)
    }
}

/// Runs the relay (when built) and the Node baseline, one after the other.
pub async fn run(world: &World, functions: &Functions, plan: &Plan) -> anyhow::Result<(Option<Rotation>, Rotation)> {
    let upstream = world.upstream(plan.rotation_lifetime).await?;
    let margin = plan.rotation_margin;
    let site = world.site(&upstream).cache(|c| c.safety_margin(margin).refresh_window(margin));
    let config = world.write_config("rotation", &site)?;
    let relay = match functions.relay(world, &config) {
        Some(spec) => Some(under_load(world, &upstream.tokens, &upstream.api, &spec, plan).await?),
        None => None,
    };
    let node_spec = functions.baseline(world, &upstream, plan.rotation_margin);
    let node = under_load(world, &upstream.tokens, &upstream.api, &node_spec, plan).await?;
    Ok((relay, node))
}

async fn under_load(
    world: &World,
    tokens: &TokenServer,
    api: &testkit::ApiServer,
    spec: &Spec,
    plan: &Plan,
) -> anyhow::Result<Rotation> {
    world.flush_store().await?;
    world.reset_store_count().await?;
    api.clear_requests();
    let calls_before = tokens.calls();
    let stop = AtomicBool::new(false);
    let load = async {
        let loaded = async {
            let started = spec.start(Some(&relay_path())).await?;
            let target = Target::new(started.instance.addr, relay_path());
            load::run(&target, plan.rotation_concurrency, Duration::ZERO, plan.rotation_run).await
        }
        .await;
        stop.store(true, Ordering::Relaxed);
        loaded
    };
    let (measured, times) = tokio::join!(load, call_times(|| tokens.calls(), &stop));
    let measured = measured?;

    Ok(Rotation {
        token_calls: tokens.calls() - calls_before,
        rotations: bursts(&times),
        store: world.store_count().await?,
        sent: measured.sent + 1,
        failed: measured.failed,
        upstream_requests: api.requests().len() as u64,
    })
}

/// When the token endpoint's call counter moved, until `stop`.
async fn call_times(calls: impl Fn() -> usize, stop: &AtomicBool) -> Vec<Instant> {
    let mut seen = calls();
    let mut times = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = calls();
        times.extend(std::iter::repeat_n(Instant::now(), now.saturating_sub(seen)));
        seen = now;
        tokio::time::sleep(CALL_POLL).await;
    }
    times
}

/// Groups of calls separated by more than [`ROTATION_GAP`].
fn bursts(times: &[Instant]) -> usize {
    let gaps = times.windows(2).filter(|w| w[1].duration_since(w[0]) > ROTATION_GAP).count();
    if times.is_empty() { 0 } else { gaps + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_close_together_are_one_rotation() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(bursts(&[]), 0);
        assert_eq!(bursts(&[at(0), at(3), at(4), at(2000), at(2001), at(4000)]), 3);
    }
}

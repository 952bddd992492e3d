//! The cost of one Upstash REST round trip on this machine, for reading the
//! other figures: the relay's rate limit makes one per request, the Node
//! baseline one (a `GET`) per request. Sent on one keep-alive connection, like
//! a function's HTTP client reuses its connection to Upstash.

use hyper::header::HeaderValue;

use crate::load::{self, Target};
use crate::plan::Plan;
use crate::stats::Percentiles;
use crate::world::{World, addr_of};

/// A script of the same shape as a fixed-window rate limit: `INCR`, `PTTL`,
/// `PEXPIRE` on the first hit.
const COUNTER_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) local t = redis.call('PTTL', KEYS[1]) \
if t < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) t = tonumber(ARGV[1]) end return {n, t}";

pub async fn run(world: &World, plan: &Plan) -> anyhow::Result<Option<Percentiles>> {
    let command = serde_json::json!(["EVAL", COUNTER_SCRIPT, "1", "bench:store-trip", "60000"]);
    let target = Target::post(addr_of(&world.upstash.url())?, "/", serde_json::to_vec(&command)?)
        .with_authorization(HeaderValue::from_str(&format!("Bearer {}", world.upstash.token()))?);
    let measured = load::run(&target, 1, plan.warmup, plan.measure).await?;
    anyhow::ensure!(measured.failed == 0, "Upstash REST refused the round-trip probe");
    Ok(measured.samples.percentiles())
}

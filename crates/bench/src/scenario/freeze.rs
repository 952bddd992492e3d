//! `tokenrelay-bench freeze`: the Vercel function as production runs it,
//! each instance frozen (SIGSTOP) once it has answered and thawed (SIGCONT)
//! for its next request, next to the same load on instances left awake
//! behind the same front. The scenarios are `relay_e2e::scenarios` (the
//! freeze tests hold them to their targets): token fetches per rotation,
//! requests admitted over the rate limit, stale answers served, and the
//! store round trips of a cold instance, each with its latency. The machine
//! is noisy: compare the ratios, not the milliseconds.

use std::path::PathBuf;
use std::time::Duration;

use relay_e2e::Freeze;
use relay_e2e::frozen::Platform;
use relay_e2e::scenarios::{self, Figures, Pace, RateLimitPlan, RevalidatePlan, RotationPlan};

use crate::stats::Samples;

/// What each scenario runs: the freeze tests' plans, or a few seconds each.
struct Plans {
    rotation: RotationPlan,
    rate_limit: RateLimitPlan,
    revalidate: RevalidatePlan,
}

impl Plans {
    fn new(quick: bool) -> Self {
        if !quick {
            return Self {
                rotation: RotationPlan::default(),
                rate_limit: RateLimitPlan::default(),
                revalidate: RevalidatePlan::default(),
            };
        }
        // 4 s tokens due for refresh every 2 s, over 4 s; 20 requests in 2 s;
        // 3 requests 2.5 s apart (the route's ttl is 2 s).
        Self {
            rotation: RotationPlan {
                lifetime: Duration::from_secs(4),
                safety_margin: Duration::from_secs(1),
                refresh_window: Duration::from_secs(1),
                pace: Pace { requests: 17, every: Duration::from_millis(250) },
                ..RotationPlan::default()
            },
            rate_limit: RateLimitPlan { pace: Pace { requests: 20, every: Duration::from_millis(100) } },
            revalidate: RevalidatePlan { pace: Pace { requests: 3, every: Duration::from_millis(2500) } },
        }
    }
}

/// Runs every scenario frozen and awake on the Vercel function `relay_bin`; returns the markdown.
pub async fn run(relay_bin: PathBuf, quick: bool) -> anyhow::Result<String> {
    let platform = Platform::Vercel(relay_bin);
    let plans = Plans::new(quick);
    let mut rows = Vec::new();

    crate::progress("freeze: token rotation");
    let [frozen, awake] = both(|freeze| scenarios::rotation(&platform, freeze, plans.rotation)).await?;
    rows.push(row("rotation", "token fetches per rotation", &frozen, &awake, |f| {
        format!("{} / {} = {:.2}", f.fetches, f.rotations, f.fetches as f64 / f.rotations as f64)
    }));

    crate::progress("freeze: rate limit");
    let [frozen, awake] = both(|freeze| scenarios::rate_limit(&platform, freeze, plans.rate_limit)).await?;
    rows.push(row("rate limit", "admitted / limit", &frozen, &awake, |f| format!("{} / {}", f.admitted, f.limit)));

    crate::progress("freeze: stale-while-revalidate");
    let [frozen, awake] = both(|freeze| scenarios::stale_while_revalidate(&platform, freeze, plans.revalidate)).await?;
    rows.push(row("stale-while-revalidate", "stale answers served", &frozen, &awake, |f| {
        format!("{} of {}", f.stale, f.statuses.len())
    }));

    crate::progress("freeze: cold path");
    let [frozen, awake] = both(|freeze| scenarios::cold_path(&platform, freeze)).await?;
    rows.push(row("cold path", "store round trips", &frozen, &awake, |f| f.store_requests.to_string()));

    Ok(format!(
        "| scenario | figure | frozen | awake | p50 frozen / awake | p99 frozen / awake |\n\
         |---|---|---|---|---|---|\n{}",
        rows.concat()
    ))
}

/// The scenario with instances frozen, then awake.
async fn both<F, Fut, T>(mut scenario: F) -> anyhow::Result<[T; 2]>
where
    F: FnMut(Freeze) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    Ok([scenario(Freeze::On).await?, scenario(Freeze::Off).await?])
}

fn row<F: Figures>(name: &str, what: &str, frozen: &F, awake: &F, figure: impl Fn(&F) -> String) -> String {
    let percentiles = |f: &F| f.latencies().iter().copied().collect::<Samples>().percentiles();
    let (p, q) = (percentiles(frozen), percentiles(awake));
    let cell = |pick: fn(&crate::stats::Percentiles) -> Duration| match (&p, &q) {
        (Some(p), Some(q)) => {
            format!("{:.1} / {:.1} ms (×{:.2})", ms(pick(p)), ms(pick(q)), ms(pick(p)) / ms(pick(q)).max(f64::EPSILON))
        }
        _ => "–".to_owned(),
    };
    format!(
        "| {name} | {what} | {} | {} | {} | {} |\n",
        figure(frozen),
        figure(awake),
        cell(|p| p.p50),
        cell(|p| p.p99)
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

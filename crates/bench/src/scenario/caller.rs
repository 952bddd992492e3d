//! `tokenrelay-bench caller`: what proving the caller adds to a request on
//! the Vercel function. One instance, awake, serves the same request on a
//! route without proof, with a login's JWT checked on every request (one per
//! signature algorithm; the JWKS is in memory after the first), and with the
//! relay session the JWT earned. Rounds interleave the ways, so compare the
//! ratios and differences, not the milliseconds: each request also opens a
//! connection through the test front.

use std::path::PathBuf;
use std::time::Duration;

use relay_e2e::caller_checks::{self, Callers};
use relay_e2e::frozen::Platform;
use relay_e2e::{Fixture, Freeze, Logs};

use crate::stats::{Percentiles, Samples};

/// Runs the comparison on the Vercel function `relay_bin`; returns the markdown.
pub async fn run(relay_bin: PathBuf, quick: bool) -> anyhow::Result<String> {
    let rounds = if quick { 20 } else { 400 };
    let fx = Fixture::start().await?;
    let callers = Callers::start(&fx).await?;
    let logs = Logs::default();
    let mut env = fx.env();
    env.extend(callers.env());
    let deployment = Platform::Vercel(relay_bin).deploy_with(env, 1, Freeze::Off, &logs).await?;
    let mut rows = String::new();
    for (kid, alg) in [("rs", "RS256"), ("es", "ES256"), ("ed", "EdDSA")] {
        crate::progress(&format!("caller: {alg}, {rounds} rounds"));
        let cost = caller_checks::proof_cost(&deployment.shell, &callers, kid, rounds).await?;
        let open = percentiles(&cost.open)?;
        rows.push_str(&row(&format!("no proof (the {alg} rounds)"), &open, &open));
        rows.push_str(&row(&format!("JWT ({alg}) on every request"), &percentiles(&cost.jwt)?, &open));
        rows.push_str(&row(&format!("relay session (after {alg})"), &percentiles(&cost.session)?, &open));
    }
    Ok(format!("| caller proof | p50 | p99 | p50 added vs no proof |\n|---|---|---|---|\n{rows}"))
}

fn percentiles(latencies: &[Duration]) -> anyhow::Result<Percentiles> {
    latencies.iter().copied().collect::<Samples>().percentiles().ok_or_else(|| anyhow::anyhow!("no samples"))
}

fn row(name: &str, p: &Percentiles, open: &Percentiles) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "| {name} | {:.2} ms | {:.2} ms | {:+.3} ms (×{:.2}) |\n",
        ms(p.p50),
        ms(p.p99),
        ms(p.p50) - ms(open.p50),
        ms(p.p50) / ms(open.p50).max(f64::EPSILON)
    )
}

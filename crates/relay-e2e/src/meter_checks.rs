//! The usage meter on a platform shell: what every instance answered adds
//! up in the store, and `tokenrelay status` reads it back, to the request.

use std::time::Duration;

use anyhow::ensure;
use tokenrelay::{Broker, Env};

use crate::{Fixture, Shell};

/// Past two of the meter's write intervals (10 s, `relay::meter`): each
/// instance's next request that meets no rate limit writes its counts, its
/// own included (one that meets it carries them in the rate limit's round
/// trip, and is counted with the next write).
const FLUSH_WAIT: Duration = Duration::from_millis(20_500);

/// The `counted` upstream's answers, spread over `shells` (one per
/// instance), are what `status` says of its last hour: answers by class,
/// refusals by code, upstream calls (each one the API received) and
/// distinct clients.
pub async fn usage_adds_up_across_instances(shells: &[Shell], fx: &Fixture) -> anyhow::Result<()> {
    let before = fx.api.requests().iter().filter(|r| r.uri.starts_with("/v3/echo/counted-")).count();
    ensure!(before == 0, "the counted upstream is this check's alone");
    let mut answered = 0;
    for (i, shell) in shells.iter().cycle().take(3 * shells.len()).enumerate() {
        let reply = shell.get_as(60 + (i % 3) as u8, &format!("/api/relay/counted/echo/counted-{i}")).await?;
        ensure!(reply.status == 200, "request {i}: {} {}", reply.status, reply.text());
        answered += 1;
    }
    tokio::time::sleep(FLUSH_WAIT).await;
    for shell in shells {
        let refused = shell.get_as(63, "/api/relay/counted/nope").await?;
        ensure!(refused.error_code().as_deref() == Some("route_not_found"), "{}", refused.text());
    }

    let env = Env::from_pairs(fx.env());
    let broker = Broker::from_env(&env)?;
    let status = tokenrelay::operator::status(&broker, Some("counted")).await?;
    let usage = &status[0].usage;
    let (no_route, echo) = (&usage[0].last_hour, &usage[1].last_hour);
    ensure!(echo.statuses.get("2xx") == Some(&answered), "answers: {:?}, sent {answered}", echo.statuses);
    let calls = fx.api.requests().iter().filter(|r| r.uri.starts_with("/v3/echo/counted-")).count() as u64;
    ensure!(echo.calls == calls, "upstream calls: {} counted, the API got {calls}", echo.calls);
    ensure!(echo.clients == 3, "clients 60, 61 and 62: {}", echo.clients);
    let refused = shells.len() as u64;
    ensure!(
        no_route.refusals.get("route_not_found") == Some(&refused) && no_route.statuses.get("4xx") == Some(&refused),
        "the refusals before a route, one per instance: {no_route:?}"
    );
    Ok(())
}

//! Rotating the upstream's client secret without downtime, through every
//! shell: the fixture's `rotating` upstream names a previous secret beside
//! the current one, and the token endpoint is made to refuse the current one
//! (a new secret mistyped, or not active yet). Leaves the endpoint accepting
//! the current secret again.

use anyhow::ensure;
use testkit::Logs;

use crate::fixture::Fixture;
use crate::http::Shell;

const ROTATING: &str = "/api/relay/rotating/search/images?phrase=cats";

/// With the current secret refused, every instance of `shells` answers every
/// request: one rotation for all of them sends the current secret, is
/// refused, sends the previous one and shares that token (no second fetch
/// per instance); the function log says the previous secret is in use.
pub async fn a_refused_current_secret_falls_back_to_the_previous_one(
    shells: &[Shell],
    fx: &Fixture,
    logs: &Logs,
) -> anyhow::Result<()> {
    fx.tokens.accept_secrets(&[fx.previous_secret()]);
    let before = fx.tokens.secrets_sent().len();
    let result = relay_through_the_previous_secret(shells, fx, logs, before).await;
    fx.tokens.accept_secrets(&[fx.secret()]);
    result
}

async fn relay_through_the_previous_secret(
    shells: &[Shell],
    fx: &Fixture,
    logs: &Logs,
    before: usize,
) -> anyhow::Result<()> {
    for round in 0..2 {
        for (i, shell) in shells.iter().enumerate() {
            let reply = shell.get(ROTATING, &[]).await?;
            ensure!(reply.status == 200, "round {round}, instance {i}: status {} {}", reply.status, reply.text());
        }
    }
    // Named, never shown: the secrets stay out of the failure message.
    let sent: Vec<&str> = fx.tokens.secrets_sent()[before..]
        .iter()
        .map(|s| match s.as_str() {
            s if s == fx.secret() => "current",
            s if s == fx.previous_secret() => "previous",
            _ => "another",
        })
        .collect();
    ensure!(
        sent == ["current", "previous"],
        "one rotation for {} instances: the current secret refused once, the previous accepted once; sent {sent:?}",
        shells.len()
    );
    let said = logs.json_lines().iter().any(|line| {
        line["message"].as_str().is_some_and(|m| m.starts_with("the previous secret minted the token"))
            && line["secret"] == "previous"
    });
    ensure!(said, "no log line says the previous secret is in use:\n{}", logs.tail(20));
    Ok(())
}

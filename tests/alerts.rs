//! Alerts across instances: four processes of the compiled Vercel function
//! share one store (real Redis behind the Upstash REST protocol) and one
//! local webhook receiver. A burst spends a budget of 20 calls: the receiver
//! gets exactly one budget-80% event, one budget-100% event and one usage
//! spike (no history: the spike's minimum decides), and nothing else. With
//! the current secret refused at the token endpoint, the instances send one
//! event saying the previous secret minted the token.

use std::path::Path;
use std::time::Duration;

use anyhow::ensure;
use relay_e2e::frozen::vercel_rewrite;
use relay_e2e::{Fixture, Logs, Shell, Visitor, bounded};
use testkit::WebhookReceiver;
use testkit::config::Budget;
use testkit::freeze::{Served, ServedProcess};

/// Processes sharing the store, as concurrent Vercel instances would.
const INSTANCES: usize = 4;
const BUDGET: u64 = 20;
const BURST: usize = 60;
const DAY: Duration = Duration::from_secs(86_400);
const HOOK_VAR: &str = "TOKENRELAY_ALERT_WEBHOOK";

async fn start_function(env: &[(String, String)], logs: &Logs) -> anyhow::Result<ServedProcess> {
    Served::vercel(Path::new(env!("CARGO_BIN_EXE_relay"))).spawn(env, logs).await
}

fn kinds(receiver: &WebhookReceiver) -> Vec<String> {
    let mut kinds: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|b| format!("{} {}", b["tokenrelay"]["kind"].as_str().unwrap_or("?"), b["tokenrelay"]["upstream"]))
        .collect();
    kinds.sort();
    kinds
}

/// [`INSTANCES`] processes of the function with `config` and the webhook of `receiver`.
async fn start_instances(
    fx: &Fixture,
    config: &Path,
    receiver: &WebhookReceiver,
    logs: &Logs,
) -> anyhow::Result<(Vec<ServedProcess>, Vec<Shell>)> {
    let mut env = fx.env();
    env.retain(|(k, _)| k != "TOKENRELAY_CONFIG");
    env.push(("TOKENRELAY_CONFIG".into(), config.display().to_string()));
    env.push((HOOK_VAR.into(), receiver.url()));
    let mut functions = Vec::new();
    for _ in 0..INSTANCES {
        functions.push(start_function(&env, logs).await?);
    }
    let shells = functions
        .iter()
        .map(|f| Shell::new(format!("127.0.0.1:{}", f.port), Visitor::Header("x-real-ip"), false, vercel_rewrite))
        .collect();
    Ok((functions, shells))
}

#[tokio::test]
async fn a_burst_over_four_instances_sends_each_budget_level_and_the_spike_once() {
    bounded(Duration::from_secs(120), async {
        let fx = Fixture::start().await?;
        let receiver = WebhookReceiver::start().await?;
        let config = fx.dir().join("alerts.toml");
        fx.site()
            .edit_upstream("budgeted", |u| u.relay(|r| r.budget(Budget::new(BUDGET, DAY))))
            .alerts(|a| a.webhook_env(HOOK_VAR).spike_min_calls(10).spike_check(Duration::from_secs(1)))
            .write(&config)?;
        let logs = Logs::default();
        let (_functions, shells) = start_instances(&fx, &config, &receiver, &logs).await?;

        // The burst, sent as fast as the instances answer, round the instances.
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let shell = shells[i % INSTANCES].clone();
            sends.spawn(async move { shell.get_as(1 + i as u8, &format!("/api/relay/budgeted/echo/plain/{i}")).await });
        }
        let mut statuses = Vec::new();
        while let Some(reply) = sends.join_next().await {
            statuses.push(reply??.status);
        }
        // How close to the budget a burst gets is the budget's business (calls
        // counted ahead and never made may leave it a little short); the
        // alerts follow its count, which reached it.
        let relayed = statuses.iter().filter(|s| **s == 200).count() as u64;
        ensure!(relayed > 0 && relayed <= BUDGET, "{statuses:?}");

        // The meter's flush and the spike check are chores of later requests.
        let expected = ["budget_100 \"budgeted\"", "budget_80 \"budgeted\"", "spike \"budgeted\""];
        let mut n = 0;
        testkit::wait_until("three alerts", Duration::from_secs(60), || {
            n += 1;
            let shell = shells[n % INSTANCES].clone();
            let receiver = &receiver;
            async move {
                let _ = shell.get_as(7, "/api/relay/budgeted/echo/plain/later").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                kinds(receiver).len() >= expected.len()
            }
        })
        .await?;
        // Every instance goes on serving, checking and delivering: nothing more arrives.
        for round in 0..3 {
            for shell in &shells {
                shell.get_as(8, &format!("/api/relay/budgeted/echo/plain/after-{round}")).await?;
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        ensure!(kinds(&receiver) == expected, "exactly one of each: {:?}", receiver.accepted());
        let body = &receiver.accepted()[0];
        ensure!(
            body["text"] == body["content"] && body["text"].as_str().is_some_and(|t| t.starts_with("tokenrelay: "))
        );
        fx.assert_no_secrets("the alerts", &serde_json::to_string(&receiver.accepted())?)?;
        fx.assert_no_secrets("the function logs", &logs.lines().join("\n"))?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_refused_current_secret_is_said_once_across_instances() {
    bounded(Duration::from_secs(120), async {
        let fx = Fixture::start().await?;
        let receiver = WebhookReceiver::start().await?;
        let config = fx.dir().join("alerts.toml");
        fx.site().alerts(|a| a.webhook_env(HOOK_VAR)).write(&config)?;
        let logs = Logs::default();
        let (_functions, shells) = start_instances(&fx, &config, &receiver, &logs).await?;
        fx.tokens.accept_secrets(&[fx.previous_secret()]);
        for round in 0..3 {
            for shell in &shells {
                let reply = shell.get("/api/relay/rotating/search/images?phrase=cats", &[]).await?;
                ensure!(reply.status == 200, "round {round}: {} {}", reply.status, reply.text());
            }
        }
        let expected = ["previous_secret \"rotating\""];
        testkit::wait_until("the alert", Duration::from_secs(30), || {
            let receiver = &receiver;
            async move { !kinds(receiver).is_empty() }
        })
        .await?;
        for shell in &shells {
            shell.get("/api/relay/rotating/search/images?phrase=dogs", &[]).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(kinds(&receiver) == expected, "exactly one: {:?}", receiver.accepted());
        fx.assert_no_secrets("the alerts", &serde_json::to_string(&receiver.accepted())?)?;
        Ok(())
    })
    .await;
}

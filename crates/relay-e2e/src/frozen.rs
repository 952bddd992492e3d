//! The platform shells as production runs them: each function process is
//! frozen once it has answered and thawed for its next request
//! ([`testkit::freeze`]). [`checklist`] is the list of checks every shell
//! passes, run through that front.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use testkit::freeze::{Ends, Freeze, Front, Served};

use crate::cache_checks::QueryPassing;
use crate::fixture::Fixture;
use crate::http::{Shell, Visitor};
use crate::scenarios::Figures;
use crate::{Logs, budget_checks, cache_checks, caller_checks, checks, secret_checks};

/// Processes sharing the store in the checklist, as concurrent instances would.
const CHECKLIST_INSTANCES: usize = 4;
/// Instances of the caller checklist: a session earned on one is honoured by the other.
const CALLER_INSTANCES: usize = 2;

/// A platform's function binary, and how that platform runs and reaches it.
#[derive(Clone, Debug)]
pub enum Platform {
    /// The Vercel function (`api/relay.rs`): HTTP on `$VERCEL_DEV_PORT`.
    Vercel(PathBuf),
    /// The Netlify function: a Lambda custom-runtime `bootstrap`.
    Netlify(PathBuf),
    /// A Node server over the npm package's JS handler: `node <script> <adapter>`
    /// serving HTTP on `$PORT` and answering `/_ready`, the visitor's address
    /// from `x-real-ip`.
    Node { script: PathBuf, adapter: NodeAdapter },
}

/// Which of the npm package's handlers a [`Platform::Node`] server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAdapter {
    /// `createRelay`, behind a Fetch API `Request` as frameworks build it: its
    /// URL parser resolves dot segments before the relay sees the path.
    Fetch,
    /// `createNodeRelay`: the request target as sent.
    Node,
}

/// Instances of a platform's function behind a freezing front.
pub struct Deployment {
    pub front: Front,
    /// Spreads requests over the instances, round robin.
    pub shell: Shell,
}

impl Deployment {
    /// Reaches instance `i` alone.
    pub fn instance(&self, i: usize) -> Shell {
        self.shell.at(self.front.instance_addr(i))
    }

    /// Every instance, one shell each.
    pub fn instances(&self) -> Vec<Shell> {
        (0..self.front.instances()).map(|i| self.instance(i)).collect()
    }
}

impl Platform {
    /// Starts `instances` processes on the fixture's environment.
    pub async fn deploy(
        &self,
        fx: &Fixture,
        instances: usize,
        freeze: Freeze,
        logs: &Logs,
    ) -> anyhow::Result<Deployment> {
        self.deploy_with(fx.env(), instances, freeze, logs).await
    }

    /// Starts `instances` processes on `env`.
    pub async fn deploy_with(
        &self,
        env: Vec<(String, String)>,
        instances: usize,
        freeze: Freeze,
        logs: &Logs,
    ) -> anyhow::Result<Deployment> {
        let (front, shell) = match self {
            Platform::Vercel(binary) => {
                let front = Front::vercel(binary, &env, instances, freeze, logs).await?;
                let shell = Shell::new(front.addr(), Visitor::Header("x-real-ip"), false, vercel_rewrite);
                (front, shell)
            }
            Platform::Netlify(binary) => {
                let front = Front::lambda(binary, &env, instances, freeze, logs).await?;
                // The front sets x-nf-client-connection-ip from the connection, as Netlify does.
                let shell = Shell::new(front.addr(), Visitor::SourceAddress, false, str::to_owned);
                (front, shell)
            }
            Platform::Node { script, adapter } => {
                let node = testkit::program_on_path("node")?;
                let adapter_arg = match adapter {
                    NodeAdapter::Fetch => "fetch",
                    NodeAdapter::Node => "node",
                };
                let args = [script.display().to_string(), adapter_arg.to_owned()];
                let served = Served {
                    program: &node,
                    args: &args,
                    port_var: "PORT",
                    ready_path: "/_ready",
                    ends: Ends::WithAnswer,
                };
                let front = Front::served(&served, &env, instances, freeze, logs).await?;
                let normalizes = *adapter == NodeAdapter::Fetch;
                let shell = Shell::new(front.addr(), Visitor::Header("x-real-ip"), normalizes, str::to_owned);
                (front, shell)
            }
        };
        Ok(Deployment { front, shell })
    }
}

/// Vercel appends what the `/api/relay/:path*` rewrite matched to the query.
pub fn vercel_rewrite(target: &str) -> String {
    let Some(rest) = target.strip_prefix("/api/relay/") else { return target.to_owned() };
    let path = rest.split('?').next().unwrap_or_default();
    let encoded: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let separator = if target.contains('?') { '&' } else { '?' };
    format!("{target}{separator}path={encoded}")
}

/// Every check of [`checks`], [`cache_checks`] and [`budget_checks`] through frozen instances,
/// but [`cache_checks::stale_while_revalidate_serves_at_once_and_refreshes_once`]:
/// it waits for a refresh that runs after the answer, which a frozen
/// instance never does (`scenarios::stale_while_revalidate` measures that).
pub async fn checklist(platform: &Platform) -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, CHECKLIST_INSTANCES, Freeze::On, &logs).await?;
    let shell = &deployment.shell;
    let shells = deployment.instances();

    checks::one_token_for_many_requests(std::slice::from_ref(shell), &fx, 200)
        .await
        .context("one token for many requests")?;
    checks::request_rules(shell, &fx).await?;
    // One instance: a token revoked elsewhere is only learned through a 401 of one's own.
    checks::a_401_refreshes_the_token_once(&shells[1], &fx).await.context("401 refresh")?;
    checks::rate_limit_counts_per_client(&shells[2], &fx).await.context("rate limit")?;
    checks::a_repeated_client_ip_header_counts_its_first_address(&shells[2], &fx)
        .await
        .context("repeated client-IP header")?;
    secret_checks::a_refused_current_secret_falls_back_to_the_previous_one(&shells, &fx, &logs)
        .await
        .context("secret rotation")?;
    // The front passes the query as sent, as Vercel and Netlify's `rawQuery` do.
    cache_checks::response_cache(&shells, &fx, QueryPassing::Raw).await.context("response cache")?;
    budget_checks::budget_bounds_upstream_calls(&shells, &fx).await.context("budget")?;
    budget_checks::upstream_limit_stops_every_instance(&shells, &fx).await.context("upstream limit")?;
    budget_checks::a_refusal_cools_down_only_its_route(&shells, &fx).await.context("route cooldown")?;
    budget_checks::limit_headers_past_any_clock_are_answered_and_capped(&shells, &fx)
        .await
        .context("limit headers past any clock")?;
    if let Platform::Netlify(_) = platform {
        // The function's own path reaches the same rules.
        let reply = shell.get("/.netlify/functions/relay/getty/search/images?phrase=cats", &[]).await?;
        ensure!(reply.status == 200, "function path: status {}", reply.status);
        let reply = shell.get("/.netlify/functions/relay/getty/admin", &[]).await?;
        ensure!(reply.error_code().as_deref() == Some("route_not_found"), "function path: {}", reply.text());
    }

    fx.assert_no_secrets("the responses", &shell.transcript())?;
    checks::logs_are_structured_and_secret_free(&logs.lines(), &logs.json_lines(), &fx).context("logs")
}

/// The caller-proof checks ([`caller_checks`]) through frozen instances,
/// with requests spread over them: a session earned on one is honoured by
/// the others.
pub async fn caller_checklist(platform: &Platform) -> anyhow::Result<()> {
    let fx = Fixture::start().await?;
    let callers = caller_checks::Callers::start(&fx).await?;
    let logs = Logs::default();
    let mut env = fx.env();
    env.extend(callers.env());
    let deployment = platform.deploy_with(env, CALLER_INSTANCES, Freeze::On, &logs).await?;
    let shell = &deployment.shell;
    caller_checks::jwt_caller(shell, &fx, &callers).await.context("JWT caller")?;
    caller_checks::turnstile_caller(shell, &callers).await.context("Turnstile caller")?;
    caller_checks::turnstile_sessions_open_only_their_widgets_routes(shell, &callers)
        .await
        .context("Turnstile widgets")?;
    caller_checks::turnstile_checks_hostname_and_action(shell).await.context("Turnstile hostname and action")?;
    caller_checks::siteverify_answers_stay_out_of_the_log(shell).await.context("siteverify answers")?;
    caller_checks::an_oversized_jwks_is_refused_unread(shell, &callers).await.context("oversized JWKS")?;
    // One instance: counts that other instances admitted in memory are
    // learned within the rate limit's bound, not at once.
    let one = deployment.instance(0);
    caller_checks::per_caller_rate_limit(&one, &callers).await.context("per-caller rate limit")?;
    caller_checks::failed_proofs_spend_the_address_limit(&one, &callers).await.context("failed proofs")?;
    caller_checks::fresh_turnstile_callers_share_their_address_limit(&one, &callers)
        .await
        .context("fresh Turnstile callers")?;
    fx.assert_no_secrets("the responses", &shell.transcript())?;
    caller_checks::logs_name_causes_and_no_secrets(&logs, &fx, &callers).context("logs")
}

/// Prints a scenario's figures (seen with `--nocapture`), then holds them to their targets.
pub async fn measured<F: Figures>(figures: impl Future<Output = anyhow::Result<F>>) -> anyhow::Result<()> {
    let figures = figures.await?;
    println!("{figures}");
    figures.meets_target()
}

/// The checklist and the scenarios under freeze as `#[tokio::test]`s, for
/// the platform `$platform` (a [`Platform`]): one line per shell's suite.
#[macro_export]
macro_rules! frozen_suite {
    ($platform:expr) => {
        use std::time::Duration;

        use $crate::frozen::{Platform, checklist, measured};
        use $crate::scenarios::{self, RateLimitPlan, RevalidatePlan, RotationPlan, StampedePlan};
        use $crate::{Freeze, UpstashServer, bounded};

        fn platform() -> Platform {
            $platform
        }

        #[tokio::test]
        async fn every_check_holds_with_instances_frozen_between_requests() {
            let platform = platform();
            bounded(Duration::from_secs(150), checklist(&platform)).await;
        }

        #[tokio::test]
        async fn callers_prove_themselves_with_instances_frozen_between_requests() {
            let platform = platform();
            bounded(Duration::from_secs(90), $crate::frozen::caller_checklist(&platform)).await;
        }

        #[tokio::test]
        async fn frozen_instances_fetch_at_most_one_token_per_rotation() {
            let platform = platform();
            let rotation = scenarios::rotation(&platform, Freeze::On, RotationPlan::default());
            // 20 s of requests, and room for answers held up by a frozen lock holder.
            bounded(Duration::from_secs(90), measured(rotation)).await;
        }

        /// Through a proxy that passes scripts to plain Redis, as SRH does:
        /// Redis refuses Upstash's script flag, and the fenced writes must
        /// still store and release.
        #[tokio::test]
        async fn frozen_instances_fetch_at_most_one_token_per_rotation_through_srh() {
            let platform = platform();
            let plan = RotationPlan { server: UpstashServer::Srh, ..RotationPlan::default() };
            bounded(Duration::from_secs(90), measured(scenarios::rotation(&platform, Freeze::On, plan))).await;
        }

        #[tokio::test]
        async fn a_crowd_on_cold_frozen_instances_through_srh_gets_one_token_fast() {
            let platform = platform();
            let plan = StampedePlan { server: UpstashServer::Srh, ..StampedePlan::default() };
            bounded(Duration::from_secs(60), measured(scenarios::stampede(&platform, Freeze::On, plan))).await;
        }

        #[tokio::test]
        async fn frozen_instances_admit_at_most_two_over_the_rate_limit() {
            let platform = platform();
            let rate_limit = scenarios::rate_limit(&platform, Freeze::On, RateLimitPlan::default());
            bounded(Duration::from_secs(60), measured(rate_limit)).await;
        }

        #[tokio::test]
        async fn a_frozen_instance_answers_fresh_after_its_first_stale_answer() {
            let platform = platform();
            let revalidate = scenarios::stale_while_revalidate(&platform, Freeze::On, RevalidatePlan::default());
            bounded(Duration::from_secs(60), measured(revalidate)).await;
        }

        #[tokio::test]
        async fn a_cold_instance_makes_one_store_round_trip_for_a_stored_token() {
            let platform = platform();
            bounded(Duration::from_secs(30), measured(scenarios::cold_path(&platform, Freeze::On))).await;
        }
    };
}

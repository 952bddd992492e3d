//! What freezing changes, measured: each scenario deploys a platform's
//! function behind the freeze front on a fixture of its own, paces its
//! requests, and returns its figures; [`Figures::meets_target`] says whether
//! they meet the relay's targets for frozen instances. With [`Freeze::Off`]
//! the same front and processes run without signals (the bench's comparison).
//!
//! - [`rotation`]: token fetches per rotation while short-lived tokens rotate.
//! - [`rate_limit`]: requests admitted for one client over the limit.
//! - [`stale_while_revalidate`]: stale answers in a row on one instance.
//! - [`cold_path`]: store round trips of a cold instance's first request.
//! - [`stampede`]: token fetches and the slowest answer when a crowd meets
//!   cold instances at once.
//! - [`budget_burst`]: upstream calls when a burst over every instance meets
//!   a budget.
//!
//! The rotation and stampede plans name the [`UpstashServer`] in front of the
//! store: Upstash's behaviour, or a plain-Redis proxy such as SRH.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use testkit::freeze::Freeze;

use crate::fixture::{
    CEILING_CALLS, CEILING_WINDOW, Fixture, METERED_REQUESTS, METERED_WINDOW, TokenSchedule, UpstashServer,
};
use crate::frozen::Platform;
use crate::{Logs, Shell};

/// Instances the load is spread over, round robin.
const INSTANCES: usize = 4;
const SEARCH: &str = "/api/relay/getty/search/images?phrase=cats";
const METERED: &str = "/api/relay/metered/search/images?phrase=cats";
/// A `cached` route with `ttl = "2s"` and `stale_while_revalidate = "5m"`.
const REVALIDATED: &str = "/api/relay/cached/echo/revalidated/a";
/// The `ttl` of the fixture's `/echo/revalidated/**` route.
const REVALIDATED_TTL: Duration = Duration::from_secs(2);
/// The visitor (`203.0.113.N` or `127.0.0.N`) of the rate-limit scenario.
const METERED_VISITOR: u8 = 40;
/// Requests admitted over the limit that the targets tolerate: the
/// instances' counts meet in the store, not at once.
pub const OVER_ADMISSION_ALLOWED: u32 = 2;
/// The `ceiling` upstream's relayed route, below which the burst's requests go.
const CEILING: &str = "/api/relay/ceiling/echo/burst";
/// Upstream calls over the budget that the targets tolerate (issue 27: at
/// most 24 for a budget of 20); the relay's own bound is none over.
pub const BUDGET_OVERSHOOT_ALLOWED: u64 = 4;
/// A scenario starting this close to the end of a rate-limit window waits
/// for the next one, so that all its requests count in one.
const WINDOW_SLACK: Duration = Duration::from_secs(5);
/// `Cache-Status` detail of an answer served stale while it is revalidated.
pub(crate) const STALE_DETAIL: &str = "detail=stale-while-revalidate";
/// The slowest answer the stampede's targets allow: far below the token
/// wait (`cache.wait_timeout`), so a lock that no one releases misses it.
pub const STAMPEDE_SLOWEST: Duration = Duration::from_secs(3);

/// Requests paced every `every` for `run`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub requests: usize,
    pub every: Duration,
}

impl Pace {
    /// Makes request `i` of `self` at its time, with `send`, timing each.
    async fn run<F, Fut, T>(&self, mut send: F) -> Vec<(T, Duration)>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut ticks = tokio::time::interval(self.every);
        let mut out = Vec::new();
        for i in 0..self.requests {
            ticks.tick().await;
            let started = Instant::now();
            let reply = send(i).await;
            out.push((reply, started.elapsed()));
        }
        out
    }

    fn span(&self) -> Duration {
        self.every * u32::try_from(self.requests.saturating_sub(1)).unwrap_or(u32::MAX)
    }
}

/// The rotation scenario: tokens of `lifetime`, served until `safety_margin`
/// before expiry and refreshed from `refresh_window` before that.
#[derive(Clone, Copy, Debug)]
pub struct RotationPlan {
    pub lifetime: Duration,
    pub safety_margin: Duration,
    pub refresh_window: Duration,
    pub pace: Pace,
    pub server: UpstashServer,
}

impl Default for RotationPlan {
    /// 10 s tokens served 8 s and refreshed after 6, 2 requests a second for
    /// 20 s, through Upstash's protocol as Upstash serves it.
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(10),
            safety_margin: Duration::from_secs(2),
            refresh_window: Duration::from_secs(2),
            pace: Pace { requests: 40, every: Duration::from_millis(500) },
            server: UpstashServer::Upstash,
        }
    }
}

impl RotationPlan {
    /// How long after its fetch a token is due for refresh, by the rule of
    /// `broker/entry.rs`: the margin is capped at half the lifetime, the
    /// window at half of what remains.
    fn cycle(&self) -> Duration {
        let usable = self.lifetime - self.safety_margin.min(self.lifetime / 2);
        usable - self.refresh_window.min(usable / 2)
    }

    /// Tokens the run needs: the first, then one per cycle.
    fn rotations(&self) -> usize {
        let cycles = self.pace.span().as_millis() / self.cycle().as_millis().max(1);
        1 + usize::try_from(cycles).unwrap_or(usize::MAX)
    }
}

/// The rate-limit scenario: one visitor's requests spread over the instances.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitPlan {
    pub pace: Pace,
}

impl Default for RateLimitPlan {
    /// 40 requests in 10 s against a limit of [`METERED_REQUESTS`].
    fn default() -> Self {
        Self { pace: Pace { requests: 40, every: Duration::from_millis(250) } }
    }
}

/// The stale-while-revalidate scenario: one instance, one URL whose `ttl` (2 s)
/// runs out between requests.
#[derive(Clone, Copy, Debug)]
pub struct RevalidatePlan {
    pub pace: Pace,
}

impl Default for RevalidatePlan {
    /// 6 requests 3 s apart.
    fn default() -> Self {
        Self { pace: Pace { requests: 6, every: Duration::from_secs(3) } }
    }
}

/// Figures a scenario printed, and its targets.
pub trait Figures: fmt::Display {
    /// Fails naming the target missed.
    fn meets_target(&self) -> anyhow::Result<()>;
    /// Every request's time to a complete answer.
    fn latencies(&self) -> &[Duration];
}

#[derive(Debug)]
pub struct RotationFigures {
    pub requests: usize,
    pub failed: usize,
    pub fetches: usize,
    pub rotations: usize,
    /// Relayed requests whose token the API did not accept as live.
    pub expired: usize,
    pub latencies: Vec<Duration>,
}

impl fmt::Display for RotationFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rotation: {} token fetches for {} rotations ({:.2} per rotation), {} of {} requests failed, {} with an expired token, slowest answer {:?}",
            self.fetches,
            self.rotations,
            self.fetches as f64 / self.rotations as f64,
            self.failed,
            self.requests,
            self.expired,
            self.latencies.iter().max().copied().unwrap_or_default()
        )
    }
}

impl Figures for RotationFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        ensure!(self.fetches <= self.rotations, "at most one token fetch per rotation: {self}");
        ensure!(self.failed == 0, "no request fails: {self}");
        ensure!(self.expired == 0, "no expired token reaches the API: {self}");
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}

/// Short-lived tokens rotating while requests are spread over the instances.
pub async fn rotation(platform: &Platform, freeze: Freeze, plan: RotationPlan) -> anyhow::Result<RotationFigures> {
    let schedule = TokenSchedule {
        lifetime: plan.lifetime,
        safety_margin: Some(plan.safety_margin),
        refresh_window: Some(plan.refresh_window),
    };
    let fx = Fixture::start_on(plan.server, schedule).await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, INSTANCES, freeze, &logs).await?;
    let seen = std::cell::Cell::new(0);
    let outcomes = plan
        .pace
        .run(|_| async {
            let ok = deployment.shell.get(SEARCH, &[]).await.is_ok_and(|r| r.status == 200);
            // A token live now was live when it was used; the relay serves none
            // within `safety_margin` of its expiry, so one dead now was used dead.
            let requests = fx.api.requests();
            let expired = requests[seen.get()..]
                .iter()
                .filter_map(|r| r.header("authorization")?.strip_prefix("Bearer "))
                .filter(|token| !fx.tokens.is_valid(token))
                .count();
            seen.set(requests.len());
            (ok, expired)
        })
        .await;
    Ok(RotationFigures {
        requests: outcomes.len(),
        failed: outcomes.iter().filter(|((ok, _), _)| !ok).count(),
        fetches: fx.tokens.calls(),
        rotations: plan.rotations(),
        expired: outcomes.iter().map(|((_, expired), _)| expired).sum(),
        latencies: outcomes.into_iter().map(|(_, took)| took).collect(),
    })
}

#[derive(Debug)]
pub struct RateLimitFigures {
    pub requests: usize,
    pub admitted: u32,
    pub limit: u32,
    /// Answers neither 200 nor 429.
    pub other: usize,
    pub latencies: Vec<Duration>,
}

impl fmt::Display for RateLimitFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit: {} of {} requests admitted for a limit of {} ({} over), {} answered neither 200 nor 429",
            self.admitted,
            self.requests,
            self.limit,
            self.admitted.saturating_sub(self.limit),
            self.other
        )
    }
}

impl Figures for RateLimitFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        let most = self.limit + OVER_ADMISSION_ALLOWED;
        ensure!(self.admitted <= most, "at most {most} admitted: {self}");
        ensure!(self.admitted >= self.limit, "the limit's own requests are admitted: {self}");
        ensure!(self.other == 0, "every answer is 200 or 429: {self}");
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}

/// One visitor's requests spread over the instances, in one window.
pub async fn rate_limit(platform: &Platform, freeze: Freeze, plan: RateLimitPlan) -> anyhow::Result<RateLimitFigures> {
    let fx = Fixture::start().await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, INSTANCES, freeze, &logs).await?;
    // Windows are aligned to the epoch: start early enough in one (pacing, not synchronisation).
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let left = METERED_WINDOW - Duration::from_millis((since_epoch.as_millis() % METERED_WINDOW.as_millis()) as u64);
    if left < plan.pace.span() + WINDOW_SLACK {
        tokio::time::sleep(left).await;
    }
    let outcomes = plan.pace.run(|_| deployment.shell.get_as(METERED_VISITOR, METERED)).await;
    let mut figures = RateLimitFigures {
        requests: outcomes.len(),
        admitted: 0,
        limit: METERED_REQUESTS,
        other: 0,
        latencies: vec![],
    };
    for (reply, took) in outcomes {
        match reply?.status {
            200 => figures.admitted += 1,
            429 => {}
            _ => figures.other += 1,
        }
        figures.latencies.push(took);
    }
    Ok(figures)
}

#[derive(Debug)]
pub struct RevalidateFigures {
    /// Each answer's `Cache-Status`.
    pub statuses: Vec<String>,
    /// The time between two requests.
    pub every: Duration,
    pub stale: usize,
    pub upstream_calls: usize,
    pub latencies: Vec<Duration>,
}

impl RevalidateFigures {
    fn is_stale(status: &str) -> bool {
        status.contains(STALE_DETAIL)
    }

    /// Seconds since the upstream answered, from `Cache-Status`'s `ttl`
    /// (the route's ttl minus the age).
    fn age(status: &str) -> Option<u64> {
        let ttl: i64 = status.split(';').find_map(|p| p.trim().strip_prefix("ttl="))?.parse().ok()?;
        u64::try_from(REVALIDATED_TTL.as_secs() as i64 - ttl).ok()
    }
}

impl fmt::Display for RevalidateFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stale-while-revalidate: {} of {} answers stale, {} upstream calls; Cache-Status: {:?}",
            self.stale,
            self.statuses.len(),
            self.upstream_calls,
            self.statuses
        )
    }
}

impl Figures for RevalidateFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        let first_stale = self.statuses.iter().position(|s| Self::is_stale(s));
        ensure!(first_stale.is_some(), "the ttl ran out between requests, yet nothing was served stale: {self}");
        // Each stale hit's refresh must have been stored before the next request:
        // that answer is then about one spacing old (a lost refresh leaves it
        // older by a spacing with every request). With requests further apart
        // than the ttl, it is served stale again, and refreshed again. `ttl` is
        // in whole seconds rounded down, so an answer a few milliseconds past
        // the spacing reads one second older: the bound allows that second,
        // and a lost refresh (two spacings) still exceeds it.
        let most = u64::try_from(self.every.as_millis().div_ceil(1000)).unwrap_or(u64::MAX).saturating_add(1);
        for status in first_stale.map_or(&[][..], |i| &self.statuses[i + 1..]) {
            let age = Self::age(status);
            ensure!(
                age.is_some_and(|age| age <= most),
                "every answer after the first stale one comes from the refresh the previous request made (age {age:?} s): {self}"
            );
        }
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}

/// One URL on one instance, asked again each time its entry went stale.
pub async fn stale_while_revalidate(
    platform: &Platform,
    freeze: Freeze,
    plan: RevalidatePlan,
) -> anyhow::Result<RevalidateFigures> {
    let fx = Fixture::start().await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, 1, freeze, &logs).await?;
    let mut figures =
        RevalidateFigures { statuses: vec![], every: plan.pace.every, stale: 0, upstream_calls: 0, latencies: vec![] };
    for (reply, took) in plan.pace.run(|_| deployment.shell.get(REVALIDATED, &[])).await {
        let reply = reply?;
        ensure!(reply.status == 200, "{REVALIDATED}: {} {}", reply.status, reply.text());
        let status = reply.header("cache-status").unwrap_or_default().to_owned();
        figures.stale += usize::from(RevalidateFigures::is_stale(&status));
        figures.statuses.push(status);
        figures.latencies.push(took);
    }
    let path = REVALIDATED.replace("/api/relay/cached", "/v3");
    figures.upstream_calls = fx.api.requests().iter().filter(|r| r.path() == path).count();
    Ok(figures)
}

#[derive(Debug)]
pub struct ColdPathFigures {
    /// Upstash REST requests during the cold instance's first relayed request.
    pub store_requests: u64,
    pub latencies: Vec<Duration>,
}

impl fmt::Display for ColdPathFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cold path: {} store round trips for a cold instance's first request", self.store_requests)
    }
}

impl Figures for ColdPathFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        ensure!(self.store_requests <= 1, "one store round trip: {self}");
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}

/// A cold instance's first request, its token already in the store (put
/// there by another instance, stopped since).
pub async fn cold_path(platform: &Platform, freeze: Freeze) -> anyhow::Result<ColdPathFigures> {
    let fx = Fixture::start().await?;
    let logs = Logs::default();
    let warm = platform.deploy(&fx, 1, freeze, &logs).await?;
    let reply = warm.shell.get(SEARCH, &[]).await?;
    ensure!(reply.status == 200, "warm-up: {} {}", reply.status, reply.text());
    // Nothing of it may reach the store while the cold instance is counted.
    drop(warm);
    let cold = platform.deploy(&fx, 1, freeze, &logs).await?;
    fx.upstash.reset_counts();
    let started = Instant::now();
    let reply = cold.shell.get(SEARCH, &[]).await?;
    let took = started.elapsed();
    ensure!(reply.status == 200, "cold request: {} {}", reply.status, reply.text());
    ensure!(fx.tokens.calls() == 1, "the cold instance fetched a token of its own");
    Ok(ColdPathFigures { store_requests: fx.upstash.requests(), latencies: vec![took] })
}

/// A crowd meeting cold instances: `concurrent` requests at once spread
/// over them, then `sequential` ones, one after another.
#[derive(Clone, Copy, Debug)]
pub struct Crowd {
    pub concurrent: usize,
    pub sequential: usize,
}

impl Default for Crowd {
    /// 120 at once, then 60 in turn.
    fn default() -> Self {
        Self { concurrent: 120, sequential: 60 }
    }
}

/// The stampede scenario: a crowd, through `server`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StampedePlan {
    pub crowd: Crowd,
    pub server: UpstashServer,
}

#[derive(Debug)]
pub struct StampedeFigures {
    pub instances: usize,
    /// Answers other than 200, and requests that got none.
    pub failed: usize,
    pub fetches: usize,
    pub latencies: Vec<Duration>,
}

impl StampedeFigures {
    pub fn slowest(&self) -> Duration {
        self.latencies.iter().max().copied().unwrap_or_default()
    }
}

impl fmt::Display for StampedeFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stampede: {} of {} requests answered 200 over {} instances, slowest answer {:?}, {} token fetches",
            self.latencies.len() - self.failed,
            self.latencies.len(),
            self.instances,
            self.slowest(),
            self.fetches
        )
    }
}

impl Figures for StampedeFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        ensure!(self.failed == 0, "every request answers 200: {self}");
        ensure!(self.slowest() <= STAMPEDE_SLOWEST, "no answer takes longer than {STAMPEDE_SLOWEST:?}: {self}");
        ensure!(self.fetches <= self.instances, "at most one token fetch per instance: {self}");
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}

/// A crowd meeting cold instances behind the platform's front.
pub async fn stampede(platform: &Platform, freeze: Freeze, plan: StampedePlan) -> anyhow::Result<StampedeFigures> {
    let fx = Fixture::start_on(plan.server, TokenSchedule::default()).await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, INSTANCES, freeze, &logs).await?;
    Ok(stampede_on(&deployment.instances(), &fx, plan.crowd).await)
}

/// `crowd` on `shells` (the instances, each its own process, sharing `fx`'s
/// store), request `i` on instance `i` modulo their number.
pub async fn stampede_on(shells: &[Shell], fx: &Fixture, crowd: Crowd) -> StampedeFigures {
    let send = |i: usize| async move {
        let started = Instant::now();
        let ok = shells[i % shells.len()].get(SEARCH, &[]).await.is_ok_and(|r| r.status == 200);
        (ok, started.elapsed())
    };
    let mut outcomes = futures_util::future::join_all((0..crowd.concurrent).map(send)).await;
    for i in crowd.concurrent..crowd.concurrent + crowd.sequential {
        outcomes.push(send(i).await);
    }
    StampedeFigures {
        instances: shells.len(),
        failed: outcomes.iter().filter(|(ok, _)| !ok).count(),
        fetches: fx.tokens.calls(),
        latencies: outcomes.into_iter().map(|(_, took)| took).collect(),
    }
}

/// The budget scenario: `requests` spread evenly over the instances, each
/// instance's share sent one after another as fast as it answers, all
/// instances at once.
#[derive(Clone, Copy, Debug)]
pub struct BurstPlan {
    pub requests: usize,
}

impl Default for BurstPlan {
    /// 60 requests against a budget of [`CEILING_CALLS`] (issue 27's measure).
    fn default() -> Self {
        Self { requests: 60 }
    }
}

#[derive(Debug)]
pub struct BurstFigures {
    pub instances: usize,
    pub requests: usize,
    pub budget: u64,
    /// Calls the API received.
    pub upstream_calls: u64,
    /// Answers 200.
    pub answered: u64,
    /// Answers 503 `budget_exhausted` with a `Retry-After` within the window.
    pub refused: u64,
    /// Any other answer, or none.
    pub other: Vec<String>,
    pub latencies: Vec<Duration>,
}

impl fmt::Display for BurstFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "budget burst: {} upstream calls for {} requests over {} instances against a budget of {} \
             ({} answered, {} refused budget_exhausted, {} other)",
            self.upstream_calls,
            self.requests,
            self.instances,
            self.budget,
            self.answered,
            self.refused,
            self.other.len()
        )
    }
}

impl Figures for BurstFigures {
    fn meets_target(&self) -> anyhow::Result<()> {
        let most = self.budget + BUDGET_OVERSHOOT_ALLOWED;
        ensure!(self.upstream_calls <= most, "at most {most} upstream calls: {self}");
        ensure!(self.other.is_empty(), "every answer is 200 or budget_exhausted: {self}: {:?}", self.other);
        ensure!(self.answered == self.upstream_calls, "each answer 200 is one call: {self}");
        // Calls an instance counted ahead and never made are lost to the
        // window; here each instance makes calls until its share ends.
        ensure!(self.upstream_calls >= self.budget / 2, "the budget's calls are made: {self}");
        Ok(())
    }

    fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}

/// A burst over every instance against the `ceiling` upstream's budget.
pub async fn budget_burst(platform: &Platform, freeze: Freeze, plan: BurstPlan) -> anyhow::Result<BurstFigures> {
    let fx = Fixture::start().await?;
    let logs = Logs::default();
    let deployment = platform.deploy(&fx, INSTANCES, freeze, &logs).await?;
    let shells = deployment.instances();
    // Windows are aligned to the epoch: start early enough in one (pacing, not synchronisation).
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let left = CEILING_WINDOW - Duration::from_millis((since_epoch.as_millis() % CEILING_WINDOW.as_millis()) as u64);
    if left < WINDOW_SLACK * 2 {
        tokio::time::sleep(left).await;
    }
    let share = |i: usize| {
        let shell = &shells[i];
        async move {
            let mut outcomes = Vec::new();
            for n in (i..plan.requests).step_by(INSTANCES) {
                let started = Instant::now();
                let reply = shell.get_as(50 + (n % 8) as u8, &format!("{CEILING}/{n}")).await;
                outcomes.push((reply, started.elapsed()));
            }
            outcomes
        }
    };
    let outcomes = futures_util::future::join_all((0..shells.len()).map(share)).await;
    let mut figures = BurstFigures {
        instances: shells.len(),
        requests: plan.requests,
        budget: CEILING_CALLS,
        upstream_calls: fx.api.requests().iter().filter(|r| r.uri.starts_with("/v3/echo/burst/")).count() as u64,
        answered: 0,
        refused: 0,
        other: Vec::new(),
        latencies: Vec::new(),
    };
    for (reply, took) in outcomes.into_iter().flatten() {
        figures.latencies.push(took);
        match reply {
            Ok(r) if r.status == 200 => figures.answered += 1,
            Ok(r) if budget_refusal(&r) => figures.refused += 1,
            Ok(r) => figures.other.push(format!("{} {}", r.status, r.text())),
            Err(e) => figures.other.push(format!("{e:#}")),
        }
    }
    Ok(figures)
}

/// A 503 `budget_exhausted` whose `Retry-After` is within the budget's window.
fn budget_refusal(reply: &crate::Reply) -> bool {
    let code = reply.json().ok().and_then(|j| j["error"]["code"].as_str().map(str::to_owned));
    let retry_after = reply.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    reply.status == 503
        && code.as_deref() == Some("budget_exhausted")
        && retry_after.is_some_and(|s| (1..=CEILING_WINDOW.as_secs()).contains(&s))
}

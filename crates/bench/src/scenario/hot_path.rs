//! Hot path: the same API request sent straight to the upstream, through
//! nginx (one bare proxy hop, when installed), through the relay binary,
//! through the bare hops of the relay's own stack (`hop`) and of Node
//! (bench/node-proxy), through the JS handler (`createRelay` behind a Fetch
//! API adapter, and `createNodeRelay`) and through the Node baseline, with the token warm,
//! at each concurrency level, then once more against an upstream as slow as a
//! real API; and the same levels against the realistic upstream (bench/jwt-api,
//! verifying a JWT per request) without the baseline; and memory-cache hits
//! of a relay whose route caches against nginx's `proxy_cache` hits, the same
//! answer both times. Rounds interleave the
//! ways so that machine noise hits them alike. Alongside: store round trips
//! per request (Upstash REST counter) and the function processes' CPU time
//! per request.

use std::time::Duration;

use hyper::header::HeaderValue;

use crate::load::{self, Measured, Target};
use crate::nginx::Nginx;
use crate::plan::Plan;
use crate::procs::Instance;
use crate::world::{JWT_UPSTREAM, SEARCH, StoreCount, UPSTREAM, Upstream, World, relay_path_for, slow_request};

/// Which API a level was measured against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Api {
    /// testkit's in-process API: about 30 µs per answer.
    InProcess,
    /// bench/jwt-api: a Node API verifying an RS256 JWT per request.
    Jwt,
    /// The in-process API's answer from a cache: the relay's memory level
    /// against nginx's `proxy_cache` (neither asks the API).
    Cached,
}

/// The prefix of nginx's caching location: the relay's path below it.
pub const NGINX_CACHED: &str = "/cached";

/// The realistic upstream, when it runs: its address and a token it accepts.
pub struct JwtApi {
    pub addr: std::net::SocketAddr,
    pub token: String,
}

/// One concurrency level: every round of each way to the API.
pub struct Level {
    pub api: Api,
    pub concurrency: usize,
    /// How long the upstream took to answer on purpose (`None`: at once).
    pub upstream_delay: Option<Duration>,
    pub direct: Series,
    pub nginx: Option<Series>,
    pub relay: Option<Series>,
    /// The relay stack's bare hop; empty for cache hits.
    pub rust_hop: Series,
    /// Node's bare proxy hop; empty for cache hits.
    pub node_proxy: Series,
    /// The JS handler as `createRelay`, behind a Fetch API adapter.
    pub js: Series,
    /// The JS handler as `createNodeRelay`.
    pub js_node: Series,
    /// Empty for the JWT API (the baseline serves one upstream).
    pub node: Series,
}

/// The rounds of one way to the API, in order, and all of them pooled.
#[derive(Default)]
pub struct Series {
    pub pooled: Measured,
    pub rounds: Vec<Figures>,
}

/// What one round measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub p50: Duration,
    pub p99: Duration,
    pub throughput: f64,
}

impl Series {
    fn add(&mut self, measured: Measured) {
        if let Some(p) = measured.samples.percentiles() {
            self.rounds.push(Figures { p50: p.p50, p99: p.p99, throughput: measured.throughput() });
        }
        self.pooled.merge(measured);
    }

    /// The median over rounds of `f(this round)`.
    pub fn median(&self, f: impl Fn(&Figures) -> f64) -> Option<f64> {
        self.median_vs(self, |a, _| f(a))
    }

    /// The median over rounds of `f(this round, the same round of `base`)`:
    /// comparing within a round cancels the noise that moves both.
    pub fn median_vs(&self, base: &Series, f: impl Fn(&Figures, &Figures) -> f64) -> Option<f64> {
        let mut values: Vec<f64> = self.rounds.iter().zip(&base.rounds).map(|(a, b)| f(a, b)).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    }
}

/// What a function spent serving the hot path.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cost {
    pub store: StoreCount,
    pub cpu: Duration,
    /// Requests it relayed, warmups included.
    pub relayed: u64,
}

impl Cost {
    /// Per relayed request: all store round trips, and those for the token.
    pub fn store_per_request(&self) -> (f64, f64) {
        let per = |n: u64| if self.relayed == 0 { 0.0 } else { n as f64 / self.relayed as f64 };
        (per(self.store.requests), per(self.store.token()))
    }

    pub fn cpu_per_request(&self) -> Duration {
        self.cpu.checked_div(u32::try_from(self.relayed.max(1)).unwrap_or(u32::MAX)).unwrap_or_default()
    }

    fn add(&mut self, other: Cost) {
        self.store.add(other.store);
        self.cpu += other.cpu;
        self.relayed += other.relayed;
    }
}

pub struct HotPath {
    pub levels: Vec<Level>,
    pub relay_cost: Option<Cost>,
    pub rust_hop_cost: Cost,
    pub node_proxy_cost: Cost,
    pub js_cost: Cost,
    pub js_node_cost: Cost,
    pub node_cost: Cost,
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Direct,
    Nginx,
    Relay,
    RustHop,
    NodeProxy,
    Js,
    JsNode,
    Node,
}

/// The servers under test.
pub struct Servers<'a> {
    pub upstream: &'a Upstream,
    /// The main upstream's token, for the direct calls.
    pub token: &'a str,
    pub jwt: Option<&'a JwtApi>,
    pub nginx: Option<&'a Nginx>,
    pub relay: Option<&'a Instance>,
    /// A relay whose API route caches ([`World::cached_site`]).
    pub cached: Option<&'a Instance>,
    /// The relay stack's bare hop.
    pub rust_hop: &'a Instance,
    /// Node's bare proxy hop.
    pub node_proxy: &'a Instance,
    /// The JS handler as `createRelay`, and as `createNodeRelay`.
    pub js: &'a Instance,
    pub js_node: &'a Instance,
    pub node: &'a Instance,
}

pub async fn run(world: &World, servers: &Servers<'_>, plan: &Plan) -> anyhow::Result<HotPath> {
    let Servers { upstream, token, jwt, nginx, relay, cached, rust_hop, node_proxy, js, js_node, node } = *servers;
    let (delay, slow_concurrency) = plan.slow_upstream;
    let main = plan.concurrency.iter().map(|&c| (Api::InProcess, c, None)).chain([(
        Api::InProcess,
        slow_concurrency,
        Some(delay),
    )]);
    let realistic = plan.concurrency.iter().filter(|_| jwt.is_some()).map(|&c| (Api::Jwt, c, None));
    let hits = plan.concurrency.iter().filter(|_| cached.is_some() && nginx.is_some()).map(|&c| (Api::Cached, c, None));
    if let (Some(cached), Some(nginx)) = (cached, nginx) {
        check_hits(cached, nginx).await?;
    }
    let mut levels = Vec::new();
    let mut relay_cost = relay.map(|_| Cost::default());
    let mut rust_hop_cost = Cost::default();
    let mut node_proxy_cost = Cost::default();
    let mut js_cost = Cost::default();
    let mut js_node_cost = Cost::default();
    let mut node_cost = Cost::default();
    for (api, concurrency, upstream_delay) in main.chain(realistic).chain(hits) {
        let request = upstream_delay.map_or_else(|| SEARCH.to_owned(), slow_request);
        let (name, direct) = match (api, jwt) {
            (Api::Jwt, Some(jwt)) => (
                JWT_UPSTREAM,
                Target::new(jwt.addr, request.clone())
                    .with_authorization(HeaderValue::from_str(&format!("Bearer {}", jwt.token))?),
            ),
            _ => (UPSTREAM, upstream.direct(token, &request)?),
        };
        let relayed = |addr| Target::new(addr, format!("/api/relay/{name}{request}"));
        let mut targets = vec![(Via::Direct, direct, None)];
        if api == Api::Cached {
            targets.extend(nginx.map(|n| (Via::Nginx, cached_in_nginx(n.addr, &request), None)));
            targets.extend(cached.map(|r| (Via::Relay, relayed(r.addr), Some(r))));
        } else {
            targets.extend(nginx.map(|n| (Via::Nginx, relayed(n.addr), None)));
            targets.extend(relay.map(|r| (Via::Relay, relayed(r.addr), Some(r))));
            targets.push((Via::RustHop, relayed(rust_hop.addr), Some(rust_hop)));
            targets.push((Via::NodeProxy, relayed(node_proxy.addr), Some(node_proxy)));
            targets.push((Via::Js, relayed(js.addr), Some(js)));
            targets.push((Via::JsNode, relayed(js_node.addr), Some(js_node)));
        }
        if api == Api::InProcess {
            targets.push((Via::Node, Target::new(node.addr, relay_path_for(&request)), Some(node)));
        }
        let mut level = Level {
            api,
            concurrency,
            upstream_delay,
            direct: Series::default(),
            nginx: nginx.map(|_| Series::default()),
            relay: relay.map(|_| Series::default()),
            rust_hop: Series::default(),
            node_proxy: Series::default(),
            js: Series::default(),
            js_node: Series::default(),
            node: Series::default(),
        };
        for round in 0..plan.rounds {
            // Each round starts with a different target, so none is always first.
            let mut order = targets.clone();
            let first = round % order.len();
            order.rotate_left(first);
            for (via, target, instance) in order {
                world.reset_store_count().await?;
                let cpu_before = instance.map(Instance::cpu_time).transpose()?.unwrap_or_default();
                let measured = load::run(&target, concurrency, plan.warmup, plan.measure).await?;
                let cpu = instance.map(Instance::cpu_time).transpose()?.unwrap_or_default().saturating_sub(cpu_before);
                let cost = Cost { store: world.store_count().await?, cpu, relayed: measured.sent };
                upstream.api.clear_requests();
                if measured.failed > 0 {
                    anyhow::bail!(
                        "{} of {} requests {} failed on the hot path",
                        measured.failed,
                        measured.sent,
                        describe(via)
                    );
                }
                let (series, total) = match via {
                    Via::Direct => (Some(&mut level.direct), None),
                    Via::Nginx => (level.nginx.as_mut(), None),
                    // The relay's cost per request is the relayed requests'.
                    Via::Relay if api == Api::Cached => (level.relay.as_mut(), None),
                    Via::Relay => (level.relay.as_mut(), relay_cost.as_mut()),
                    Via::RustHop => (Some(&mut level.rust_hop), Some(&mut rust_hop_cost)),
                    Via::NodeProxy => (Some(&mut level.node_proxy), Some(&mut node_proxy_cost)),
                    Via::Js => (Some(&mut level.js), Some(&mut js_cost)),
                    Via::JsNode => (Some(&mut level.js_node), Some(&mut js_node_cost)),
                    Via::Node => (Some(&mut level.node), Some(&mut node_cost)),
                };
                if let Some(total) = total {
                    total.add(cost);
                }
                if let Some(series) = series {
                    series.add(measured);
                }
            }
        }
        levels.push(level);
    }
    Ok(HotPath { levels, relay_cost, rust_hop_cost, node_proxy_cost, js_cost, js_node_cost, node_cost })
}

/// The path of `request` through nginx's caching location.
fn cached_in_nginx(addr: std::net::SocketAddr, request: &str) -> Target {
    Target::new(addr, format!("{NGINX_CACHED}/api/relay/{UPSTREAM}{request}"))
}

/// Fails unless, after a first request, both caches answer [`SEARCH`] from
/// themselves: the rows must compare hits, not misses.
async fn check_hits(relay: &Instance, nginx: &Nginx) -> anyhow::Result<()> {
    let ways = [
        (
            relay.addr,
            Target::new(relay.addr, format!("/api/relay/{UPSTREAM}{SEARCH}")),
            "cache-status",
            "detail=memory",
        ),
        (nginx.addr, cached_in_nginx(nginx.addr, SEARCH), "x-cache-status", "HIT"),
    ];
    for (addr, target, header, says) in ways {
        let mut connection = load::Connection::open(addr).await?;
        connection.send(&target).await?;
        let reply = connection.send(&target).await?;
        let status = reply.headers.get(header).and_then(|v| v.to_str().ok()).unwrap_or_default();
        anyhow::ensure!(
            reply.status.is_success() && status.contains(says),
            "a second request to {addr} was not a cache hit: {} with {header}: {status:?}",
            reply.status
        );
    }
    Ok(())
}

fn describe(via: Via) -> &'static str {
    match via {
        Via::Direct => "straight to the API",
        Via::Nginx => "through nginx",
        Via::Relay => "through the relay",
        Via::RustHop => "through the relay stack's bare hop",
        Via::NodeProxy => "through Node's bare proxy",
        Via::Js => "through the JS handler (createRelay)",
        Via::JsNode => "through the JS handler (createNodeRelay)",
        Via::Node => "through the Node baseline",
    }
}

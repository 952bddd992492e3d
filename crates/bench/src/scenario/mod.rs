//! The measurements, one module each, in the order of the issue: hot path
//! (with store round trips in steady state), cold start (with the store round
//! trips of a cold instance), rotation under load, stampede, build time; and
//! apart from the report, the response cache, frozen instances and caller
//! proof.

pub mod addon;
pub mod caller;
pub mod cold_start;
pub mod freeze;
pub mod hot_path;
pub mod response_cache;
pub mod rotation;
pub mod stampede;
pub mod store_trip;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::nginx::Route;
use crate::procs::Spec;
use crate::world::{Upstream, World};

/// How to start each kind of function instance.
#[derive(Default)]
pub struct Functions {
    /// The compiled Vercel function, when it was found.
    pub relay: Option<PathBuf>,
    /// The JS handler's server (tests/js/support/serve-relay.mjs).
    pub js_handler: PathBuf,
    /// The Node baseline's server (bench/node-baseline/server.mjs).
    pub baseline: PathBuf,
    /// Node's bare proxy hop (bench/node-proxy/server.mjs).
    pub node_proxy: PathBuf,
}

impl Functions {
    /// The relay binary on `config`, served on `VERCEL_DEV_PORT` like `vercel dev` does.
    pub fn relay(&self, world: &World, config: &Path) -> Option<Spec> {
        Some(Spec {
            name: "relay",
            program: self.relay.clone()?,
            args: Vec::new(),
            env: world.relay_env(config),
            port_var: "VERCEL_DEV_PORT",
            log_dir: world.dir().to_owned(),
        })
    }

    /// The JS handler on `config` as `createRelay` behind a Fetch API
    /// adapter, with the relay binary's environment.
    pub fn js_handler(&self, world: &World, config: &Path) -> Spec {
        Spec::node("js", &self.js_handler, world.relay_env(config), world.dir())
    }

    /// The JS handler on `config` as `createNodeRelay`.
    pub fn js_node_handler(&self, world: &World, config: &Path) -> Spec {
        let mut spec = Spec::node("js-node", &self.js_handler, world.relay_env(config), world.dir());
        spec.args.push("node".into());
        spec
    }

    /// Node's bare proxy hop over `routes`, as nginx's row proxies them
    /// (without its cache, which Node's has not).
    pub fn node_proxy(&self, world: &World, routes: &[Route]) -> Spec {
        Spec::node("node-proxy", &self.node_proxy, routes_env(routes), world.dir())
    }

    /// The bare hop of the relay's own stack over `routes` (`tokenrelay-bench hop`).
    pub fn rust_hop(&self, world: &World, routes: &[Route]) -> anyhow::Result<Spec> {
        Ok(Spec {
            name: "rust-hop",
            program: std::env::current_exe()?,
            args: vec!["hop".into()],
            env: routes_env(routes),
            port_var: "PORT",
            log_dir: world.dir().to_owned(),
        })
    }

    /// The Node baseline for `upstream`, caching its token `margin` shorter than its lifetime.
    pub fn baseline(&self, world: &World, upstream: &Upstream, margin: Duration) -> Spec {
        Spec::node("node", &self.baseline, world.baseline_env(upstream, margin), world.dir())
    }
}

/// The bare hops' routes ([`crate::hop::ROUTES_VAR`]): nginx's, but for its cache.
fn routes_env(routes: &[Route]) -> Vec<(String, String)> {
    let routes: Vec<_> = routes
        .iter()
        .filter(|r| !r.cache)
        .map(|r| {
            serde_json::json!({
                "prefix": r.prefix,
                "origin": format!("http://{}", r.upstream),
                "basePath": r.base_path,
                "authorization": r.authorization,
            })
        })
        .collect();
    vec![(crate::hop::ROUTES_VAR.to_owned(), serde_json::Value::from(routes).to_string())]
}

//! # tokenrelay-node
//!
//! The Node.js addon of tokenrelay, for build time. Static-site generators
//! call the upstream API while the site is built; this addon gets them a
//! token through the same [`tokenrelay::Broker`] the browse-time functions
//! use, so the build warms the shared store, and it guards the output:
//!
//! - `prefetch(options)` gets the chosen upstreams' tokens, each valid for
//!   at least the build margin, and hands back those the build asked for;
//! - `getToken(upstream, options)` returns one token, for a build script;
//! - `check(options)` validates the config and returns a redacted summary;
//! - `purgeCache(upstream, pathPrefix, options)` forgets cached answers
//!   (the relay's response cache) in every instance sharing the store;
//! - `status(upstream, options)` reads what the store holds of the relayed
//!   upstreams (token age, budgets, cooldowns, the usage meter's last hour
//!   and day), never a secret;
//! - `report(options)` renders the usage meter's report as one HTML page;
//! - `sendTestAlert(options)` posts a test event to the `[alerts] webhook`
//!   (the `tokenrelay alert test` command);
//! - `init(options)` adds tokenrelay to a site for Netlify or Vercel,
//!   merging into its existing files (the `tokenrelay init` command);
//! - `RelayHandler` serves the browse-time relay inside a JavaScript
//!   server (the package's `tokenrelay/fetch`, see [`relay_handler`]);
//! - `appendConfig`, `relayMount`, `claimsMount` serve the Netlify plugin
//!   placing the prebuilt relay function (see [`relay_function`]);
//! - `platforms()` gives each platform's request headers, as the core
//!   declares them, to `tokenrelay/fetch` (see [`platform`]);
//! - `scanForLeaks(dir, options)` finds token, credential and store secret
//!   values in a build's output, naming the file and variable only.
//!
//! Every function returns a Promise; errors carry a stable `code` (see
//! [`error`]). The npm package's `index.js` wraps the generated loader
//! (`binding.js`) to restore that code on the JS side.
//!
//! This crate only adapts: options become a [`tokenrelay::Env`]
//! ([`tokenrelay_site::Site`]) or `tokenrelay-site`'s options, results become
//! plain objects. Token logic stays in the core; `init` and the leak scan are
//! `tokenrelay-site`'s.

// Nothing from JS, the network or the environment may panic the host process.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod alert;
pub mod cache;
pub mod check;
pub mod error;
pub mod init;
mod issued;
pub mod leak_scan;
pub mod platform;
pub mod prefetch;
pub mod relay_function;
pub mod relay_handler;
pub mod status;
pub mod token;

#[cfg(test)]
mod tests;

use napi_derive::napi;

use cache::PurgeOptions;
use check::{CheckOptions, CheckSummary};
use init::{InitOptions, InitReport};
use leak_scan::{ScanOptions, ScanReport};
use prefetch::{PrefetchOptions, PrefetchReport};
use token::TokenOptions;

/// Worker threads of the addon's Tokio runtime, unless `TOKIO_WORKER_THREADS`
/// says otherwise. One: a request's work in Rust (the relay's rules, the
/// upstream call) is a small share of what the one JavaScript thread spends
/// on it, and with a second worker every request's tasks wake threads back
/// and forth: measured at one connection, 5.6 context switches per relayed
/// request with two workers against 1.8 with one (bench/README.md).
const RUNTIME_WORKERS: usize = 1;

/// Sets up napi's Tokio runtime, before any function of the addon uses it.
#[napi_derive::module_init]
fn init_runtime() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(RUNTIME_WORKERS);
    }
    // Without a runtime of its own, napi builds its default one at first use.
    if let Ok(runtime) = builder.enable_all().build() {
        runtime.spawn(tokenrelay::relay::anchor_timers());
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}

/// Prefetches the chosen upstreams' tokens through the broker (warming the
/// shared store) and hands back those asked for in `env`.
#[napi(js_name = "prefetch")]
pub async fn js_prefetch(options: Option<PrefetchOptions>) -> napi::Result<PrefetchReport> {
    prefetch::prefetch(options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// One upstream's token (a secret: never log it).
#[napi(js_name = "getToken")]
pub async fn js_get_token(upstream: String, options: Option<TokenOptions>) -> napi::Result<String> {
    token::get_token(upstream, options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// Validates the config and store settings without fetching anything.
#[napi(js_name = "check")]
pub async fn js_check(options: Option<CheckOptions>) -> napi::Result<CheckSummary> {
    check::check(options.unwrap_or_default()).map_err(error::AddonError::into_napi)
}

/// Searches `dir` for the value of any token, credential or store secret.
#[napi(js_name = "scanForLeaks")]
pub async fn js_scan_for_leaks(dir: String, options: Option<ScanOptions>) -> napi::Result<ScanReport> {
    leak_scan::scan_for_leaks(dir, options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// Forgets `upstream`'s cached answers below `pathPrefix` (all without one).
#[napi(js_name = "purgeCache")]
pub async fn js_purge_cache(
    upstream: String,
    path_prefix: Option<String>,
    options: Option<PurgeOptions>,
) -> napi::Result<()> {
    cache::purge_cache(upstream, path_prefix, options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// What the shared store holds of `upstream` (every relayed upstream
/// without one): the token's times, budgets and cooldown, never a secret.
#[napi(js_name = "status")]
pub async fn js_status(
    upstream: Option<String>,
    options: Option<PurgeOptions>,
) -> napi::Result<Vec<status::UpstreamStatus>> {
    status::status(upstream, options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// Renders the usage report: one self-contained HTML page.
#[napi(js_name = "report")]
pub async fn js_report(options: Option<PurgeOptions>) -> napi::Result<String> {
    status::report(options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// Posts a test event to the config's `[alerts] webhook`.
#[napi(js_name = "sendTestAlert")]
pub async fn js_send_test_alert(options: Option<PurgeOptions>) -> napi::Result<()> {
    alert::send_test_alert(options.unwrap_or_default()).await.map_err(error::AddonError::into_napi)
}

/// Adds tokenrelay to the site in `options.cwd` (see [`init`]); writes only with `write: true`.
#[napi(js_name = "init")]
pub async fn js_init(options: Option<InitOptions>) -> napi::Result<InitReport> {
    init::init(options.unwrap_or_default()).map_err(error::AddonError::into_napi)
}

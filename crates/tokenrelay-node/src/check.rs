//! `check`: validate the config and the store settings, without fetching
//! anything, and describe them with every secret replaced by its variable name.

use std::collections::HashMap;

use napi_derive::napi;
use tokenrelay::Broker;
use tokenrelay_site::{Site, SiteOptions, StoreChoice};

use crate::error::AddonError;

/// Options of `check`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct CheckOptions {
    /// The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`.
    pub config_path: Option<String>,
    /// The site's directory, where the config and `.env` are looked up. Default: the current directory.
    pub cwd: Option<String>,
    /// Variables that override the process environment; `""` unsets one.
    pub env: Option<HashMap<String, String>>,
}

/// The effective configuration, redacted.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct CheckSummary {
    /// The config file (absolute path).
    pub file: String,
    /// The store, e.g. `upstash https://… (AES-256-GCM)`.
    pub store: String,
    /// Whether the store is shared beyond this machine (Upstash).
    pub shared_store: bool,
    /// One entry per upstream, by name.
    pub upstreams: Vec<UpstreamCheck>,
}

/// One upstream of a [`CheckSummary`].
#[napi(object)]
#[derive(Debug, Clone)]
pub struct UpstreamCheck {
    /// The upstream's name.
    pub name: String,
    /// Where requests are relayed.
    pub base_url: String,
    /// `oauth2_client_credentials`, `json` or `static`.
    pub token_source: String,
    /// The token endpoint, when the source has one.
    pub token_url: Option<String>,
    /// Credential fields, each a literal or `$NAME (redacted)`.
    pub credentials: Vec<Credential>,
}

/// One credential field, redacted.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct Credential {
    /// The config field, e.g. `client_secret`.
    pub field: String,
    /// A literal from the config, or `$NAME (redacted)`.
    pub value: String,
}

/// Runs `check`.
pub fn check(options: CheckOptions) -> Result<CheckSummary, AddonError> {
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let broker = Broker::from_env(&site.env)?;
    let summary = broker.summary();
    Ok(CheckSummary {
        file: summary.file,
        store: summary.store,
        shared_store: broker.has_remote_store(),
        upstreams: summary
            .upstreams
            .into_iter()
            .map(|u| UpstreamCheck {
                name: u.name,
                base_url: u.base_url,
                token_source: u.token_source.to_owned(),
                token_url: u.token_url,
                credentials: u.credentials.into_iter().map(|(field, value)| Credential { field, value }).collect(),
            })
            .collect(),
    })
}

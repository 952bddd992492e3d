//! `purgeCache`: forgets an upstream's cached answers, for when its data changed.

use std::collections::HashMap;

use napi_derive::napi;
use tokenrelay::Broker;
use tokenrelay_site::{Site, SiteOptions, StoreChoice};

use crate::error::AddonError;
use crate::prefetch::unknown_upstream;

/// Options of `purgeCache`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct PurgeOptions {
    /// The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`.
    pub config_path: Option<String>,
    /// The site's directory, where the config and `.env` are looked up. Default: the current directory.
    pub cwd: Option<String>,
    /// Variables that override the process environment; `""` unsets one.
    pub env: Option<HashMap<String, String>>,
}

/// Runs `purgeCache`: every cached answer of `upstream` whose path (as
/// forwarded, e.g. `/search/images`) is `path_prefix` or below it is gone
/// for every instance sharing the store; all of them without a prefix.
pub async fn purge_cache(
    upstream: String,
    path_prefix: Option<String>,
    options: PurgeOptions,
) -> Result<(), AddonError> {
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let broker = Broker::from_env(&site.env)?;
    if !broker.config().upstreams().any(|u| u.name() == upstream) {
        return Err(unknown_upstream(&broker, &upstream));
    }
    tokenrelay::operator::purge_cache(&broker, &upstream, path_prefix.as_deref().unwrap_or_default()).await?;
    Ok(())
}

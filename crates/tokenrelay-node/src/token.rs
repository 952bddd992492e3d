//! `getToken`: one upstream's token, for a build script that calls the API itself.

use std::collections::HashMap;

use napi::Either;
use napi_derive::napi;
use tokenrelay::Broker;
use tokenrelay_site::{Site, SiteOptions, StoreChoice};

use crate::error::AddonError;
use crate::prefetch::{build_margin, name_credentials, unknown_upstream};

/// Options of `getToken`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct TokenOptions {
    /// The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`.
    pub config_path: Option<String>,
    /// The site's directory, where the config and `.env` are looked up. Default: the current directory.
    pub cwd: Option<String>,
    /// Variables that override the process environment; `""` unsets one.
    pub env: Option<HashMap<String, String>>,
    /// How long the token must stay valid: one expiring sooner is replaced.
    /// Seconds, or a duration such as `"15m"`. Default: any valid token.
    pub build_margin: Option<Either<String, f64>>,
}

/// Runs `getToken`: the token value (a secret: never log it).
pub async fn get_token(upstream: String, options: TokenOptions) -> Result<String, AddonError> {
    let margin = options.build_margin.as_ref().map(|m| build_margin(Some(m))).transpose()?;
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let broker = Broker::from_env(&site.env)?;
    if !broker.config().upstreams().any(|u| u.name() == upstream) {
        return Err(unknown_upstream(&broker, &upstream));
    }
    let token = match margin {
        Some(min) => broker.token_valid_for(&upstream, min).await,
        None => broker.token(&upstream).await,
    };
    let token = token.map_err(|e| name_credentials(&broker, &upstream, e))?;
    crate::issued::remember(&upstream, "getToken", &token);
    Ok(token.expose().to_owned())
}

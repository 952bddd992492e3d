//! # tokenrelay
//!
//! Keeps a third-party API's short-lived access token on the server side and
//! shares it across every serverless instance.
//!
//! - [`Config`] reads `tokenrelay.toml`: named upstreams, each with one token
//!   source (`oauth2_client_credentials`, `json` or `static`); secrets are
//!   references to environment variables, never literals.
//! - [`Broker`] fetches each upstream's token, caches it in memory and in a
//!   shared store (Upstash Redis over REST, sealed with AES-256-GCM), and
//!   rotates it with exactly one fetch across all instances.
//! - [`relay`] answers the browser's `/api/relay/<upstream>/<path>` requests
//!   with the token attached, framework-free, for the platform shells.
//! - [`vercel`] and [`netlify`] (features of the same names) are the whole
//!   function of each platform: a site's function file only calls their `run`.
//! - [`operator`] reads the state of each relayed upstream from the shared
//!   store (`tokenrelay status`) and purges cached answers, off the request path.
//! - [`platform`] declares the headers each platform sets (the visitor's
//!   address, the request id), for every shell.
//! - [`check`] validates everything and returns a redacted [`Summary`].
//!
//! Every error has a stable [`Error::code`] and never contains a secret.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenrelay::Error> {
//! // tokenrelay.toml:
//! //   [upstreams.getty]
//! //   base_url = "https://api.gettyimages.com/v3"
//! //   [upstreams.getty.token]
//! //   type = "oauth2_client_credentials"
//! //   url = "https://authentication.gettyimages.com/oauth2/token"
//! //   client_id = { env = "GETTY_API_KEY" }
//! //   client_secret = { env = "GETTY_API_SECRET" }
//! let broker = tokenrelay::Broker::from_env(&tokenrelay::Env::local())?;
//! let token = broker.token("getty").await?;
//! println!("token valid until {:?}", token.expires_at());
//! # Ok(()) }
//! ```

pub mod appended;
mod broker;
mod capped;
mod clock;
mod codes;
mod config;
mod error;
#[cfg(feature = "netlify")]
pub mod netlify;
pub mod operator;
mod param;
pub mod platform;
pub mod relay;
#[cfg(feature = "shell")]
mod shell;
mod store;
mod token;
#[cfg(feature = "vercel")]
pub mod vercel;

pub use broker::Broker;
pub use config::{CONFIG_PATH_VAR, Config, DEFAULT_CONFIG_FILE, Env, SecretVar, Summary, Upstream, UpstreamSummary};
pub use error::{Error, ErrorCode, MissingVar, Result};
pub use store::{ENCRYPTION_KEY_VAR, LOCAL_STORE_VAR, UPSTASH_VARS, VERCEL_KV_VARS};
pub use token::{MintedWith, Provenance, Token};

/// Validates the config and store settings of `env` and returns a redacted
/// summary, without fetching any token.
pub fn check(env: &Env) -> Result<Summary> {
    Ok(Broker::from_env(env)?.summary())
}

//! The Netlify function (feature `netlify`): a Lambda-runtime function taking
//! and returning API Gateway v1-shaped JSON, reached through
//! the `netlify.toml` rewrite of `/api/relay/*` to
//! `/.netlify/functions/relay/:splat`. Its `main` is
//!
//! ```no_run
//! /// The site's tokenrelay.toml, embedded by the crate's build script ("" without one).
//! const CONFIG: &str = "";
//! fn main() -> Result<(), tokenrelay::netlify::Error> {
//!     tokenrelay::netlify::run(CONFIG)
//! }
//! ```
//!
//! The prebuilt binary in the npm package `tokenrelay-linux-x64-gnu` (bin
//! `netlify-relay`) is the same `main` with nothing embedded: the build
//! plugin appends the site's config to a copy of it (see [`crate::appended`]).
//!
//! Netlify functions answer with a whole body, so the relay's buffered mode
//! is used: `relay.max_response_bytes` is enforced before anything is sent.

mod event;

use lambda_runtime::{LambdaEvent, service_fn};

use crate::broker::Broker;
use crate::config::{CONFIG_PATH_VAR, Config, Env};
use crate::platform::NETLIFY;
use crate::relay::{Endpoint, Relay};

/// What the function returns when the runtime stops with an error.
pub use lambda_runtime::Error;

/// Set to `true` by `netlify dev`; then `./.env` is read as well.
const DEV_FLAG: &str = "NETLIFY_DEV";
/// Where an embedded config says it came from, in errors.
const EMBEDDED_NAME: &str = "tokenrelay.toml (embedded at build time)";
/// Where an appended config says it came from, in errors.
const APPENDED_NAME: &str = "tokenrelay.toml (appended by netlify-plugin-tokenrelay)";

/// Serves the relay until the platform stops the process, on a Tokio runtime
/// of its own with one thread (see `shell::runtime`). Only the binary is
/// deployed, so the site's `tokenrelay.toml` travels inside it (it holds no
/// secrets: those are `{ env = … }` references): appended to the executable
/// by the build plugin, which wins over everything (`$TOKENRELAY_CONFIG` is
/// then ignored, and logged at info); else `$TOKENRELAY_CONFIG`, else
/// `embedded_config` compiled in; with none of them, `./tokenrelay.toml` is
/// read. An invalid config is answered with 500 `misconfigured` and logged.
pub fn run(embedded_config: &str) -> Result<(), Error> {
    crate::shell::runtime()?.block_on(serve(embedded_config))
}

async fn serve(embedded_config: &str) -> Result<(), Error> {
    let env = crate::shell::start(DEV_FLAG, "true");
    let endpoint = endpoint(&env, embedded_config);
    lambda_runtime::run(service_fn(move |invocation: LambdaEvent<event::Event>| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Error>(handle(&endpoint, invocation).await) }
    }))
    .await
}

fn endpoint(env: &Env, embedded_config: &str) -> Endpoint {
    // Without a readable executable (no /proc), only the appended config is lost.
    let appended = std::env::current_exe().map_or(Ok(None), |exe| crate::appended::read(&exe));
    let relay = match appended {
        Ok(Some(text)) => {
            // The plugin appended the config the build used. A
            // $TOKENRELAY_CONFIG here is the build's too (Netlify gives a
            // variable every scope by default), naming a file on the build
            // machine that the function does not have.
            if env.get(CONFIG_PATH_VAR).is_some() {
                tracing::info!(variable = CONFIG_PATH_VAR, "ignored: the config was appended at build time");
            }
            Config::parse(&text, APPENDED_NAME, env)
        }
        Ok(None) if embedded_config.is_empty() || env.get(CONFIG_PATH_VAR).is_some() => return Endpoint::from_env(env),
        Ok(None) => Config::parse(embedded_config, EMBEDDED_NAME, env),
        Err(e) => Err(e),
    };
    relay.and_then(|config| Broker::new(config, env)).map(Relay::new).into()
}

async fn handle(endpoint: &Endpoint, invocation: LambdaEvent<event::Event>) -> event::Answer {
    let mut request = invocation.payload.into_request();
    crate::shell::identify(&mut request, &NETLIFY, Some(invocation.context.request_id));
    event::Answer::from(endpoint.handle_buffered(request).await)
}

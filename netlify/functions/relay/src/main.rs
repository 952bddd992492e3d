//! The Netlify function behind `/api/relay/*` (`netlify.toml` rewrites it to
//! `/.netlify/functions/relay/:splat`). Adaptation only: the Lambda event in
//! and out (see [`event`]), the platform's client IP and request id, and the
//! config embedded at build time; everything else is `tokenrelay::relay`.
//!
//! Netlify functions answer with a whole body, so the relay's buffered mode
//! is used: `relay.max_response_bytes` is enforced before anything is sent.

mod event;

use std::sync::Arc;

use http_body_util::BodyExt;
use lambda_runtime::{LambdaEvent, service_fn};
use tokenrelay::relay::{self, ClientIp, Relay, RequestId};
use tokenrelay::{Broker, CONFIG_PATH_VAR, Config, Env};

/// Set by `netlify dev`; then `./.env` is read as well.
const DEV_FLAG: &str = "NETLIFY_DEV";
/// Netlify sets it from the connection.
const CLIENT_IP_HEADER: &str = "x-nf-client-connection-ip";
/// The site's `tokenrelay.toml` as it was at build time, empty without one (see build.rs).
const EMBEDDED_CONFIG: &str = include_str!(concat!(env!("OUT_DIR"), "/tokenrelay.toml"));

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    relay::init_logging();
    let env = if std::env::var(DEV_FLAG).as_deref() == Ok("true") { Env::local() } else { Env::process() };
    let relay = Arc::new(build(&env));
    lambda_runtime::run(service_fn(move |invocation: LambdaEvent<event::Event>| {
        let relay = relay.clone();
        async move { Ok::<_, lambda_runtime::Error>(handle(&relay, invocation).await) }
    }))
    .await
}

/// `TOKENRELAY_CONFIG` when set, else the embedded config, else `./tokenrelay.toml`.
fn build(env: &Env) -> tokenrelay::Result<Relay> {
    if env.get(CONFIG_PATH_VAR).is_some() || EMBEDDED_CONFIG.is_empty() {
        return Relay::from_env(env);
    }
    let config = Config::parse(EMBEDDED_CONFIG, "tokenrelay.toml (embedded at build time)", env)?;
    Ok(Relay::new(Broker::new(config, env)?))
}

async fn handle(relay: &tokenrelay::Result<Relay>, invocation: LambdaEvent<event::Event>) -> event::Answer {
    let mut request = invocation.payload.into_request();
    if let Some(ip) = ClientIp::from_header(request.headers(), CLIENT_IP_HEADER) {
        request.extensions_mut().insert(ip);
    }
    request.extensions_mut().insert(RequestId(invocation.context.request_id));
    let response = match relay {
        Ok(relay) => relay.handle_buffered(request).await,
        Err(err) => {
            let (parts, body) = relay::misconfigured(err).into_parts();
            http::Response::from_parts(parts, body.collect().await.map(|c| c.to_bytes()).unwrap_or_default())
        }
    };
    event::Answer::from(response)
}

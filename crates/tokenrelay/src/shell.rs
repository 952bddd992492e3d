//! What the Vercel and Netlify functions share (features `vercel` and
//! `netlify`): log setup, the environment, and the request extensions set
//! from platform headers.

use http::Request;

use crate::config::Env;
use crate::platform::Platform;
use crate::relay::{self, ClientIp, RequestId};

/// Prepares the process: JSON logs on stderr, and the environment, with
/// `./.env` read too when `dev_flag` has the value the platform's local
/// tooling sets (`vercel dev`, `netlify dev`), never in production.
pub(crate) fn start(dev_flag: &str, dev_value: &str) -> Env {
    relay::init_logging();
    if std::env::var(dev_flag).as_deref() == Ok(dev_value) { Env::local() } else { Env::process() }
}

/// The Tokio runtime a platform function serves on: one thread. An
/// instance has about one vCPU (Vercel's standard functions, and Lambda's
/// below 1,769 MB), and the relay waits on the network far more than it
/// computes, so a second worker adds no capacity, only hand-offs: with the
/// multi-thread runtime, the connection to the visitor and the one to the
/// upstream were driven by different workers, each answer waking the other
/// thread (`tokenrelay-bench profile --api in-process -c 8`: 75 µs of CPU per
/// request there, 45 µs on one thread). Blocking work (file reads, DNS)
/// still goes to Tokio's blocking pool. It runs [`relay::anchor_timers`].
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.spawn(relay::anchor_timers());
    Ok(runtime)
}

/// Marks `request` with the client IP from `platform`'s header (set from the
/// connection, replacing the visitor's) and with `request_id`.
pub(crate) fn identify<B>(request: &mut Request<B>, platform: &Platform, request_id: Option<String>) {
    if let Some(ip) = ClientIp::from_header(request.headers(), &platform.client_ip_header) {
        request.extensions_mut().insert(ip);
    }
    if let Some(id) = request_id {
        request.extensions_mut().insert(RequestId(id));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_request_deadline_on_the_runtime_wakes_nothing() {
        let writes = runtime().unwrap().block_on(relay::timer_anchor::tests::writes_to_register_a_deadline());
        assert_eq!(writes, 0, "the anchor's timer is pending");
    }
}

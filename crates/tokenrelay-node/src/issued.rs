//! Every token this process handed out (`prefetch`, `getToken`), so the leak
//! scan looks for each one, including a token replaced mid-build by a newer
//! one, without the caller naming a variable that holds it.
//!
//! Per process: the Netlify plugin's events share one process, so its
//! `onPostBuild` scan knows the tokens its `onPreBuild` fetched; a build
//! command runs in another process, and the tokens it fetches itself are
//! only found through the variables the scan is told about.

use std::sync::{Mutex, MutexGuard};

use secrecy::ExposeSecret;
use tokenrelay::Token;
use tokenrelay_site::HandedOut;

static ISSUED: Mutex<Vec<HandedOut>> = Mutex::new(Vec::new());

fn issued() -> MutexGuard<'static, Vec<HandedOut>> {
    ISSUED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers `token` as handed out by `by` (`prefetch` or `getToken`), once per value.
pub(crate) fn remember(upstream: &str, by: &'static str, token: &Token) {
    let mut issued = issued();
    if !issued.iter().any(|i| i.token.expose_secret() == token.expose()) {
        issued.push(HandedOut { upstream: upstream.to_owned(), by, token: token.expose().into() });
    }
}

/// Every token handed out so far, oldest first.
pub(crate) fn all() -> Vec<HandedOut> {
    issued().clone()
}

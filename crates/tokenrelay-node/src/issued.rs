//! Every token this process handed out (`prefetch`, `getToken`), so the leak
//! scan looks for each one, including a token replaced mid-build by a newer
//! one, without the caller naming a variable that holds it.
//!
//! Per process: the Netlify plugin's events share one process, so its
//! `onPostBuild` scan knows the tokens its `onPreBuild` fetched; a build
//! command runs in another process, and the tokens it fetches itself are
//! only found through the variables the scan is told about.

use std::sync::Mutex;

use tokenrelay::Token;

/// A token handed out, and to whom.
pub(crate) struct Issued {
    /// The upstream whose token it is.
    pub(crate) upstream: String,
    /// The function that handed it out: `prefetch` or `getToken`.
    pub(crate) by: &'static str,
    /// The token (its `Debug` is redacted).
    pub(crate) token: Token,
}

static ISSUED: Mutex<Vec<Issued>> = Mutex::new(Vec::new());

/// Remembers `token` as handed out by `by`, once per value.
pub(crate) fn remember(upstream: &str, by: &'static str, token: &Token) {
    let mut issued = ISSUED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !issued.iter().any(|i| i.token.expose() == token.expose()) {
        issued.push(Issued { upstream: upstream.to_owned(), by, token: token.clone() });
    }
}

/// Calls `f` with every token handed out so far, oldest first.
pub(crate) fn each(mut f: impl FnMut(&Issued)) {
    ISSUED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().for_each(&mut f);
}

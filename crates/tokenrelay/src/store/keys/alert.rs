//! An alert's occurrence (`crate::alerts`): whether it was delivered, and
//! the lock of the one instance delivering it. One pair per event kind,
//! subject (upstream and route) and window, so that each occurrence is sent
//! once across instances: the lock is taken with `SET NX PX` for one
//! delivery's time ([`Store::take`](crate::store::Store::take)); the mark is
//! written by the lock holder's fenced write once the webhook accepted the
//! event, and lives until the event's window is over. A failed delivery
//! releases the lock and writes no mark, so a later chore sends it again.

use super::{KeyNamer, PREFIX};

/// The keys of one occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AlertKeys {
    /// Present once the occurrence was delivered.
    pub(crate) sent: String,
    /// Held while an instance delivers it.
    pub(crate) lock: String,
}

impl AlertKeys {
    /// The keys of event `kind` about `upstream` (and its `route`, a path
    /// pattern, hashed like a budget's) in window number `window` of
    /// `window_secs` seconds.
    pub(crate) fn new(
        namer: &KeyNamer,
        kind: &str,
        upstream: Option<&str>,
        route: Option<&str>,
        window_secs: u64,
        window: u64,
    ) -> Self {
        let upstream = upstream.unwrap_or("-");
        let route = route.map_or_else(|| "-".to_owned(), |r| namer.hash(r));
        let sent = format!("{PREFIX}:alert:{kind}:{upstream}:{route}:{window_secs}:{window}");
        Self { lock: format!("{sent}:lock"), sent }
    }
}

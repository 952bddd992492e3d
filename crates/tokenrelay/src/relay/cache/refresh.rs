//! Stale-while-revalidate: one refresh of a stale entry per process, run as
//! a chore of the request that served it, through the same inner service a
//! miss calls; across instances the fill lock lets only one through.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use super::entry::Freshness;
use super::{Ask, Cached, Filled, usable};
use crate::clock::now_ms;
use crate::relay::call::{Call, Cx};
use crate::relay::chores::Chores;
use crate::relay::timing::Timing;

impl<S: Call + Clone + 'static> Cached<S> {
    /// The refresh of a stale entry, as a chore of the request that served it,
    /// unless this process runs one already; across instances, the fill lock
    /// lets only one through. It calls the same inner service as a miss.
    pub(super) fn refresh(&self, ask: &Ask<'_>, request_id: &str) -> Option<impl Future<Output = ()> + Send + 'static> {
        let started = Refreshing::start(&self.refreshing, &ask.keys.entry)?;
        let this = self.clone();
        let request = ask.out.detach();
        let (keys, identity, path) = (ask.keys.clone(), ask.identity.clone(), ask.path.clone());
        let request_id = request_id.to_owned();
        Some(async move {
            let _started = started;
            let segments = request.segments();
            let config = this.broker.config();
            let Some(out) = request.attach(config, &segments) else { return };
            let Some(policy) = out.route.cache else { return };
            let ask = Ask { out: &out, policy, identity, keys, path };
            let Ok((Some(lease), after)) = ask.keys.take(this.broker.store(), this.fill_lease()).await else {
                return;
            };
            // Another instance may have refreshed it since we read it stale.
            if usable(after.entry.as_deref(), after.purges.as_deref())
                .is_some_and(|e| e.freshness(now_ms(), &policy) == Freshness::Fresh)
            {
                lease.release().await;
                return;
            }
            // A token refresh this one makes due is its own chore, finished here.
            let chores = Chores::default();
            let mut timing = Timing::default();
            let mut cx = Cx { request_id: &request_id, timing: &mut timing, chores: &chores };
            let upstream = out.upstream.name();
            match this.fill(&ask, Some(lease), &mut cx).await {
                Ok(Filled::Answer { entry, stored: true }) => this.memory.put(&ask.identity, entry, policy.ttl),
                Ok(_) => tracing::info!(request_id, upstream, "cache refresh got an answer not to store"),
                Err(e) => tracing::warn!(request_id, upstream, code = e.code(), "cache refresh failed"),
            }
            if let Some(finish) = chores.finish(this.fill_lease()) {
                finish.await;
            }
        })
    }
}

/// This process's refresh of one entry; forgotten however it ends.
struct Refreshing {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Refreshing {
    /// `None` when this process already refreshes `key`.
    fn start(set: &Arc<Mutex<HashSet<String>>>, key: &str) -> Option<Self> {
        let fresh = set.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned());
        fresh.then(|| Self { set: set.clone(), key: key.to_owned() })
    }
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

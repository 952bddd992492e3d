//! What an operator asks of the shared store, off the request path: the
//! state of each relayed upstream (`tokenrelay status`), the usage report
//! (`tokenrelay report`) and purging cached answers. They read the key schemes and record formats of the layers that
//! own them (the cache's purge record, the counters' keys), which never
//! import this module.

#[cfg(test)]
mod meter_cost;
mod purge;
mod report;
#[cfg(test)]
mod scripted_day;
mod status;
#[cfg(test)]
mod testing;
mod usage;

pub use purge::purge_cache;
pub use report::report;
pub use status::{BudgetStatus, PurgeStatus, RouteCooldown, SharedBuckets, TokenStatus, UpstreamStatus, status};
pub use usage::{CacheAnswers, Latency, LatencyBucket, RouteUsage, Usage};

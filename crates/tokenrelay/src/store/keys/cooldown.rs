//! An upstream's cooldown (`relay::upstream_limits`): it asked every caller
//! to wait, and every instance waits until the time its key holds, in ms
//! since the epoch, stored until then.

use super::PREFIX;

/// Where `upstream`'s cooldown is shared. Upstream names are config, not
/// secrets: named in clear.
pub(crate) fn key(upstream: &str) -> String {
    format!("{PREFIX}:cooldown:{upstream}")
}

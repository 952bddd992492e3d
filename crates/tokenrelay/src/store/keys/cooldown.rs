//! An upstream's cooldown, or one of its routes' (`relay::upstream_limits`):
//! it asked every caller to wait, and every instance waits until the time
//! its key holds, in ms since the epoch, stored until then.

use super::{KeyNamer, PREFIX};

/// Where `upstream`'s cooldown is shared, or its route `route`'s (a path
/// pattern, hashed like a budget's).
pub(crate) fn key(namer: &KeyNamer, upstream: &str, route: Option<&str>) -> String {
    match route {
        None => format!("{PREFIX}:cooldown:{upstream}"),
        Some(route) => format!("{PREFIX}:cooldown:{upstream}:{}", namer.hash(route)),
    }
}

//! The in-process level: recently read fresh entries, bounded in bytes.
//!
//! An entry lives here at most [`HOT_LIFETIME`] (and never past its
//! freshness), so that a purge reaches every instance within that time
//! without a store read per request. Entries are named by their request's
//! identity itself, not by its store key: the keyed hash that hides the
//! identity from the store has nothing to hide from the process that holds
//! it, and would be most of a hit's cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::entry::CachedAnswer;

/// How long an instance serves an entry without asking the store again.
pub(crate) const HOT_LIFETIME: Duration = Duration::from_secs(1);
/// Bytes of entries kept per process (Vercel's smallest function has 128 MB).
const MAX_HOT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub(super) struct Memory {
    entries: Mutex<Hot>,
}

#[derive(Default)]
struct Hot {
    map: HashMap<String, (Arc<CachedAnswer>, Instant)>,
    bytes: usize,
}

impl Memory {
    /// The entry under `key` if still within its in-process lifetime.
    pub(super) fn get(&self, key: &str) -> Option<Arc<CachedAnswer>> {
        let hot = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        hot.map.get(key).filter(|(_, until)| Instant::now() < *until).map(|(e, _)| e.clone())
    }

    /// Keeps `entry` for at most `fresh_for`, evicting the entries closest
    /// to leaving when over the byte bound.
    pub(super) fn put(&self, key: &str, entry: Arc<CachedAnswer>, fresh_for: Duration) {
        let size = entry.size();
        if size > MAX_HOT_BYTES / 4 || fresh_for.is_zero() {
            return;
        }
        let mut hot = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let until = now + fresh_for.min(HOT_LIFETIME);
        if let Some((old, _)) = hot.map.insert(key.to_owned(), (entry, until)) {
            hot.bytes -= old.size();
        }
        hot.bytes += size;
        if hot.bytes > MAX_HOT_BYTES {
            let Hot { map, bytes } = &mut *hot;
            map.retain(|_, (e, until)| {
                let keep = *until > now;
                if !keep {
                    *bytes -= e.size();
                }
                keep
            });
            while *bytes > MAX_HOT_BYTES {
                let Some(oldest) = map.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone()) else {
                    break;
                };
                if let Some((e, _)) = map.remove(&oldest) {
                    *bytes -= e.size();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(len: usize) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer::new(
            "/x",
            crate::clock::now_ms(),
            http::StatusCode::OK,
            &http::HeaderMap::new(),
            Bytes::from(vec![b'x'; len]),
        ))
    }

    #[test]
    fn entries_leave_after_their_lifetime_and_the_bound_holds() {
        let m = Memory::default();
        m.put("a", entry(10), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.get("a").is_none());
        let big = MAX_HOT_BYTES / 4 - 100;
        for k in 0..6 {
            m.put(&k.to_string(), entry(big), Duration::from_secs(60));
        }
        assert!(m.entries.lock().unwrap().bytes <= MAX_HOT_BYTES);
        assert!(m.get("5").is_some(), "the newest stays");
    }
}

//! The embedded local store: one JSON file in the OS cache directory.
//!
//! Used when no Upstash database is configured. `netlify dev` starts a fresh
//! function process per request, so the store must outlive the process; every
//! operation holds an exclusive file lock for its read-modify-write, which
//! makes it safe under concurrent processes. Values are sealed like the
//! remote ones, under `TOKENRELAY_ENCRYPTION_KEY` or a key file created
//! beside the store with owner-only permissions.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Backend, StoreError};

const DATA_FILE: &str = "store.json";
const LOCK_FILE: &str = "store.lock";
const KEY_FILE: &str = "local.key";

/// A key-value store in a directory, with per-entry expiry.
#[derive(Debug, Clone)]
pub(crate) struct LocalStore {
    dir: PathBuf,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Entries(BTreeMap<String, Entry>);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    value: String,
    expires_at_ms: u64,
}

impl LocalStore {
    /// The default directory: `<OS cache dir>/tokenrelay`, or the temp dir where
    /// there is no cache dir (serverless sandboxes often have no `$HOME`).
    pub(crate) fn default_dir() -> PathBuf {
        dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("tokenrelay")
    }

    pub(crate) fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The base64 key of the local store, created on first use.
    pub(crate) fn key(&self) -> io::Result<String> {
        let path = self.dir.join(KEY_FILE);
        let _lock = self.lock()?;
        match fs::read_to_string(&path) {
            Ok(k) if !k.trim().is_empty() => Ok(k.trim().to_owned()),
            _ => {
                let key = super::seal::Sealer::generate_key();
                write_private(&path, key.as_bytes())?;
                Ok(key)
            }
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Entries) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.locked(op))
            .await
            .map_err(|_| StoreError::Io("local store task failed".to_owned()))?
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Runs `op` on the live entries under the exclusive file lock, writing
    /// them back (atomically, by rename) when `op` changed them.
    fn locked<T>(&self, op: impl FnOnce(&mut Entries) -> T) -> io::Result<T> {
        let _lock = self.lock()?;
        let path = self.dir.join(DATA_FILE);
        let before: Entries = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                tracing::warn!(path = %path.display(), "local token store was unreadable; starting empty");
                Entries::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Entries::default(),
            Err(e) => return Err(e),
        };
        let now = now_ms();
        let mut entries = before.clone();
        entries.0.retain(|_, e| e.expires_at_ms > now);
        let out = op(&mut entries);
        if entries != before {
            let tmp = self.dir.join(format!("{DATA_FILE}.{}.tmp", std::process::id()));
            write_private(&tmp, &serde_json::to_vec(&entries).map_err(io::Error::other)?)?;
            fs::rename(tmp, path)?;
        }
        Ok(out)
    }

    /// An exclusive lock shared by every process using this directory; released on drop.
    fn lock(&self) -> io::Result<File> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join(LOCK_FILE))?;
        file.lock()?;
        Ok(file)
    }
}

impl Backend for LocalStore {
    async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>, StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.run(move |e| keys.iter().map(|k| e.0.get(k).map(|x| x.value.clone())).collect()).await
    }

    async fn delete_if(&self, key: &str, expected: &str) -> Result<bool, StoreError> {
        let (key, expected) = (key.to_owned(), expected.to_owned());
        self.run(move |e| delete_if(e, &key, &expected)).await
    }

    async fn lock_and_read(
        &self,
        lock: &str,
        owner: &str,
        lease: Duration,
        keys: &[&str],
    ) -> Result<(bool, Vec<Option<String>>), StoreError> {
        let (lock, owner) = (lock.to_owned(), owner.to_owned());
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.run(move |e| {
            let won = !e.0.contains_key(&lock);
            if won {
                e.0.insert(lock, Entry { value: owner, expires_at_ms: now_ms() + ms(lease) });
            }
            (won, keys.iter().map(|k| e.0.get(k).map(|x| x.value.clone())).collect())
        })
        .await
    }

    async fn set_fenced(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        lock: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let (key, value, lock, owner) = (key.to_owned(), value.to_owned(), lock.to_owned(), owner.to_owned());
        // Under the file lock, with expired entries (an expired lease) already gone.
        self.run(move |e| {
            let held = delete_if(e, &lock, &owner);
            if held {
                e.0.insert(key, Entry { value, expires_at_ms: now_ms() + ms(ttl) });
            }
            held
        })
        .await
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), StoreError> {
        let key = key.to_owned();
        self.run(move |e| {
            let now = now_ms();
            let entry =
                e.0.entry(key).or_insert_with(|| Entry { value: "0".to_owned(), expires_at_ms: now + ms(window) });
            let count = entry.value.parse::<u64>().unwrap_or(0).saturating_add(1);
            entry.value = count.to_string();
            (count, Duration::from_millis(entry.expires_at_ms.saturating_sub(now)))
        })
        .await
    }
}

fn delete_if(e: &mut Entries, key: &str, expected: &str) -> bool {
    if e.0.get(key).is_some_and(|x| x.value == expected) {
        e.0.remove(key);
        return true;
    }
    false
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn now_ms() -> u64 {
    ms(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(name: &str) -> LocalStore {
        let dir =
            std::env::temp_dir().join(format!("tokenrelay-local-{name}-{}-{}", std::process::id(), fastrand::u64(..)));
        LocalStore::open(dir).unwrap()
    }

    #[tokio::test]
    async fn entries_expire() {
        let s = temp_store("expire");
        assert!(s.lock_and_read("lock", "me", Duration::from_secs(5), &[]).await.unwrap().0);
        assert!(s.set_fenced("k", "v", Duration::from_millis(50), "lock", "me").await.unwrap());
        assert_eq!(s.mget(&["k"]).await.unwrap(), vec![Some("v".to_owned())]);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.mget(&["k"]).await.unwrap(), vec![None]);
    }

    #[tokio::test]
    async fn lock_is_exclusive_and_released_only_by_its_owner() {
        let s = temp_store("nx");
        let lease = Duration::from_secs(5);
        assert!(s.lock_and_read("lock", "a", lease, &["k"]).await.unwrap().0);
        assert!(!s.lock_and_read("lock", "b", lease, &["k"]).await.unwrap().0);
        assert!(!s.delete_if("lock", "b").await.unwrap());
        assert!(s.delete_if("lock", "a").await.unwrap());
        let (won, values) = s.lock_and_read("lock", "b", lease, &["k"]).await.unwrap();
        assert!(won);
        assert_eq!(values, vec![None]);
    }

    #[tokio::test]
    async fn a_writer_whose_lease_ran_out_never_overwrites_the_new_holder() {
        let s = temp_store("fence");
        assert!(s.lock_and_read("lock", "old", Duration::from_millis(1), &[]).await.unwrap().0);
        // The old holder's lease runs out; the next caller takes the lock and stores.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !s.lock_and_read("lock", "new", Duration::from_secs(5), &[]).await.unwrap().0 {
            assert!(std::time::Instant::now() < deadline, "the 1 ms lease never expired");
        }
        assert!(s.set_fenced("k", "newer", Duration::from_secs(60), "lock", "new").await.unwrap());
        assert!(!s.set_fenced("k", "older", Duration::from_secs(60), "lock", "old").await.unwrap());
        assert_eq!(s.mget(&["k", "lock"]).await.unwrap(), vec![Some("newer".to_owned()), None]);
        // Nor while the new holder still holds the lock.
        assert!(s.lock_and_read("lock", "third", Duration::from_secs(5), &[]).await.unwrap().0);
        assert!(!s.set_fenced("k", "older", Duration::from_secs(60), "lock", "old").await.unwrap());
        assert_eq!(s.mget(&["k", "lock"]).await.unwrap(), vec![Some("newer".to_owned()), Some("third".to_owned())]);
    }

    #[tokio::test]
    async fn concurrent_stores_on_one_directory_grant_the_lock_once() {
        let dir = temp_store("race").dir().to_owned();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = LocalStore::open(dir.clone()).unwrap();
                tokio::spawn(async move {
                    s.lock_and_read("lock", &i.to_string(), Duration::from_secs(5), &[]).await.unwrap().0
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn window_counter_counts_until_its_window_ends() {
        let s = temp_store("window");
        let window = Duration::from_millis(200);
        assert_eq!(s.incr_window("hits", window).await.unwrap().0, 1);
        let (count, left) = s.incr_window("hits", window).await.unwrap();
        assert_eq!(count, 2);
        assert!(left <= window && !left.is_zero(), "{left:?}");
        tokio::time::sleep(left + Duration::from_millis(20)).await;
        assert_eq!(s.incr_window("hits", window).await.unwrap().0, 1, "a new window starts from zero");
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let s = temp_store("key");
        let k1 = s.key().unwrap();
        let k2 = s.key().unwrap();
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(s.dir().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file must not be readable by others");
        }
    }
}

//! The embedded local store: one JSON file in the OS cache directory.
//!
//! Used when no Upstash database is configured. `netlify dev` starts a fresh
//! function process per request, so the store must outlive the process; every
//! operation holds an exclusive file lock for its read-modify-write, which
//! makes it safe under concurrent processes. Values are sealed like the
//! remote ones, under `TOKENRELAY_ENCRYPTION_KEY` or a key file created
//! beside the store with owner-only permissions.
//!
//! On a machine shared with other users, the directory is the user's own:
//! created `0700`, and refused when another user owns it or may write to it
//! (they could swap the files for their own); the key file is refused when
//! another user owns it or may read or write it. Files are never opened
//! through a symbolic link, and rewrites go through temporary files with
//! unpredictable names created with `O_EXCL` (the `tempfile` crate).

#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Backend, Count, StoreError, Tallies, TallyRead};
use crate::clock::{millis, now_ms};

mod owner;

const DATA_FILE: &str = "store.json";
const LOCK_FILE: &str = "store.lock";
const KEY_FILE: &str = "local.key";

/// A key-value store in a directory, with per-entry expiry.
#[derive(Debug, Clone)]
pub(crate) struct LocalStore {
    dir: PathBuf,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Entries(BTreeMap<String, Record>);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    value: String,
    expires_at_ms: u64,
    /// A hash's fields, or an estimate's members (each counted 1: exact here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<String, u64>,
}

impl Record {
    /// `value`, until `ttl` from now.
    fn new(value: String, ttl: Duration) -> Self {
        Self { value, expires_at_ms: now_ms().saturating_add(millis(ttl)), fields: BTreeMap::new() }
    }
}

impl LocalStore {
    /// The default directory: `<OS cache dir>/tokenrelay`, or where there is
    /// no cache dir (serverless sandboxes often have no `$HOME`),
    /// `tokenrelay-<uid>` in the temp dir, which every user shares.
    pub(crate) fn default_dir() -> PathBuf {
        dirs::cache_dir()
            .map_or_else(|| std::env::temp_dir().join(format!("tokenrelay-{}", owner::uid())), |d| d.join("tokenrelay"))
    }

    /// Opens the store in `dir`, creating it private to this user; refuses a
    /// directory another user owns or may write to.
    pub(crate) fn open(dir: PathBuf) -> io::Result<Self> {
        owner::create_private_dir(&dir)?;
        owner::check(&dir, &fs::metadata(&dir)?, "directory", owner::OTHERS_WRITE)?;
        Ok(Self { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The base64 key of the local store, created on first use.
    pub(crate) fn key(&self) -> io::Result<String> {
        let path = self.dir.join(KEY_FILE);
        let _lock = self.lock()?;
        match owner::open_no_follow(OpenOptions::new().read(true), &path) {
            Ok(mut file) => {
                owner::check(&path, &file.metadata()?, "key file", owner::OTHERS_ANY)?;
                let mut key = String::new();
                file.read_to_string(&mut key)?;
                if !key.trim().is_empty() {
                    return Ok(key.trim().to_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(owner::no_follow_error(&path, e)),
        }
        let key = super::seal::Sealer::generate_key();
        self.replace(&path, key.as_bytes())?;
        Ok(key)
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
            self.replace(&path, &serde_json::to_vec(&entries).map_err(io::Error::other)?)?;
        }
        Ok(out)
    }

    /// Replaces `path` atomically: writes a temporary file with an
    /// unpredictable name (created `O_EXCL`, owner-only), then renames it.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".tokenrelay-").tempfile_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// An exclusive lock shared by every process using this directory; released on drop.
    fn lock(&self) -> io::Result<File> {
        let path = self.dir.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = owner::open_no_follow(&opts, &path).map_err(|e| owner::no_follow_error(&path, e))?;
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
                e.0.insert(lock, Record::new(owner, lease));
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
                e.0.insert(key, Record::new(value, ttl));
            }
            held
        })
        .await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |e| drop(e.0.insert(key, Record::new(value, ttl)))).await
    }

    async fn count_and_read(
        &self,
        counts: &[Count],
        tallies: &Tallies,
        keys: &[&str],
    ) -> Result<(Vec<u64>, bool, Vec<Option<String>>), StoreError> {
        let (counts, tallies) = (counts.to_vec(), tallies.clone());
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.run(move |e| {
            let totals = counts
                .into_iter()
                .map(|n| {
                    let entry = e.0.entry(n.key).or_insert_with(|| Record::new("0".to_owned(), n.ttl));
                    let total = entry.value.parse::<u64>().unwrap_or(0).saturating_add(n.add);
                    entry.value = total.to_string();
                    total
                })
                .collect();
            for f in tallies.fields {
                let entry = e.0.entry(f.key).or_insert_with(|| Record::new(String::new(), f.ttl));
                for (name, add) in f.fields {
                    let field = entry.fields.entry(name).or_default();
                    *field = field.saturating_add(add);
                }
            }
            for d in tallies.distinct {
                let entry = e.0.entry(d.key).or_insert_with(|| Record::new(String::new(), d.ttl));
                entry.fields.extend(d.members.into_iter().map(|m| (m, 1)));
            }
            (totals, true, keys.iter().map(|k| e.0.get(k).map(|x| x.value.clone())).collect())
        })
        .await
    }

    async fn read_tallies(&self, hashes: &[&str], distinct: &[&[&str]]) -> Result<TallyRead, StoreError> {
        let hashes: Vec<String> = hashes.iter().map(|k| (*k).to_owned()).collect();
        let distinct: Vec<Vec<String>> =
            distinct.iter().map(|union| union.iter().map(|k| (*k).to_owned()).collect()).collect();
        self.run(move |e| {
            let fields = |k: &String| e.0.get(k).map(|r| r.fields.clone().into_iter().collect()).unwrap_or_default();
            let count = |union: &Vec<String>| {
                let members: std::collections::BTreeSet<&String> =
                    union.iter().filter_map(|k| e.0.get(k)).flat_map(|r| r.fields.keys()).collect();
                u64::try_from(members.len()).unwrap_or(u64::MAX)
            };
            TallyRead { hashes: hashes.iter().map(fields).collect(), distinct: distinct.iter().map(count).collect() }
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
        assert!(s.set_fenced("kept", "v", Duration::from_secs(3600), "lock", "me").await.unwrap());
        s.set("brief", "v", Duration::from_millis(1)).await.unwrap();
        // Waits on the condition, not a fixed sleep: a loaded machine only makes it slower.
        let gone = async {
            while s.mget(&["brief"]).await.unwrap() != vec![None] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("an entry past its ttl is gone");
        assert_eq!(s.mget(&["kept"]).await.unwrap(), vec![Some("v".to_owned())], "one within its ttl stays");
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
    async fn fenced_write_stores_only_for_the_lock_holder() {
        let s = temp_store("fenced");
        let (lease, ttl) = (Duration::from_secs(5), Duration::from_secs(60));
        assert!(s.lock_and_read("lock", "a", lease, &[]).await.unwrap().0);
        assert!(!s.set_fenced("k", "from b", ttl, "lock", "b").await.unwrap());
        assert!(s.set_fenced("k", "from a", ttl, "lock", "a").await.unwrap());
        assert_eq!(s.mget(&["k", "lock"]).await.unwrap(), vec![Some("from a".to_owned()), None], "stored and unlocked");
        assert!(!s.set_fenced("k", "late", ttl, "lock", "a").await.unwrap(), "a released lock fences a late writer");
    }

    #[tokio::test]
    async fn counters_add_up_until_they_expire() {
        let s = temp_store("counts");
        let ttl = Duration::from_millis(200);
        let count = |add| [Count { key: "hits".to_owned(), add, ttl }];
        assert_eq!(s.count_and_read(&count(2), &Tallies::default(), &[]).await.unwrap().0, [2]);
        assert_eq!(
            s.count_and_read(&count(3), &Tallies::default(), &[]).await.unwrap().0,
            [5],
            "an addition keeps the counter's expiry"
        );
        tokio::time::sleep(ttl + Duration::from_millis(20)).await;
        assert_eq!(
            s.count_and_read(&count(1), &Tallies::default(), &[]).await.unwrap().0,
            [1],
            "an expired counter starts from zero"
        );
    }

    #[cfg(unix)]
    mod shared_machine {
        use super::*;
        use std::os::unix::fs::{PermissionsExt, symlink};

        fn fresh_dir(name: &str) -> PathBuf {
            std::env::temp_dir().join(format!("tokenrelay-shared-{name}-{}", fastrand::u64(..)))
        }

        fn mode(path: &Path) -> u32 {
            fs::metadata(path).unwrap().permissions().mode() & 0o777
        }

        #[test]
        fn directory_is_created_private_to_the_user() {
            let parent = fresh_dir("create");
            let dir = parent.join("tokenrelay");
            LocalStore::open(dir.clone()).unwrap();
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&parent), 0o700, "missing parents too");
        }

        #[test]
        fn default_directory_in_the_shared_temp_dir_is_per_user() {
            let uid = rustix::process::geteuid().as_raw();
            if dirs::cache_dir().is_none() {
                assert!(LocalStore::default_dir().ends_with(format!("tokenrelay-{uid}")));
            }
            assert_eq!(owner::uid(), uid.to_string());
        }

        #[test]
        fn directory_writable_by_others_is_refused_naming_it() {
            let dir = fresh_dir("writable");
            fs::create_dir_all(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
            let err = LocalStore::open(dir.clone()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
            let text = err.to_string();
            assert!(text.contains(&dir.display().to_string()) && text.contains("writable by other users"), "{text}");
        }

        #[test]
        fn directory_of_another_user_is_refused_naming_it() {
            let me = rustix::process::geteuid().as_raw();
            // As root, hand a fresh directory to `nobody`; otherwise `/` is another user's.
            let dir = if me == 0 {
                let dir = fresh_dir("foreign");
                fs::create_dir_all(&dir).unwrap();
                std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
                dir
            } else {
                PathBuf::from("/")
            };
            let text = LocalStore::open(dir.clone()).unwrap_err().to_string();
            assert!(text.contains(&format!("the directory {} belongs to uid", dir.display())), "{text}");
            assert!(text.contains(&format!("not to this user (uid {me})")), "{text}");
        }

        #[test]
        fn key_file_of_another_user_or_open_to_others_is_refused() {
            let s = temp_store("keyperm");
            s.key().unwrap();
            let path = s.dir().join(KEY_FILE);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let text = s.key().unwrap_err().to_string();
            assert!(text.contains("key file") && text.contains("readable or writable by other users"), "{text}");
            if rustix::process::geteuid().is_root() {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
                assert!(s.key().unwrap_err().to_string().contains("belongs to uid 65534"));
            }
        }

        #[test]
        fn key_file_behind_a_symbolic_link_is_refused() {
            let s = temp_store("keylink");
            let elsewhere = s.dir().join("planted.key");
            fs::write(&elsewhere, crate::store::seal::Sealer::generate_key()).unwrap();
            symlink(&elsewhere, s.dir().join(KEY_FILE)).unwrap();
            let text = s.key().unwrap_err().to_string();
            assert!(text.contains("is a symbolic link"), "{text}");
        }

        #[tokio::test]
        async fn rewrites_never_follow_a_planted_temporary_file_name() {
            let s = temp_store("tmp");
            // The names a predictable scheme would use (pid-based), pointing elsewhere.
            let victim = fresh_dir("victim");
            fs::write(&victim, "untouched").unwrap();
            for name in [format!("{DATA_FILE}.{}.tmp", std::process::id()), format!("{DATA_FILE}.tmp")] {
                symlink(&victim, s.dir().join(name)).unwrap();
            }
            assert!(s.lock_and_read("lock", "me", Duration::from_secs(5), &[]).await.unwrap().0);
            assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
            assert_eq!(mode(&s.dir().join(DATA_FILE)), 0o600);
            assert_eq!(s.mget(&["lock"]).await.unwrap(), vec![Some("me".to_owned())]);
        }
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

//! Who may touch the local store's files. On Unix: the owner must be this
//! user (the effective uid), and others may not have the permissions a check
//! forbids; files are opened with `O_NOFOLLOW`. Elsewhere, no checks: the
//! OS's default per-user directories apply.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Forbids write permission for group and others (a directory they could
/// swap files in).
pub(super) const OTHERS_WRITE: u32 = 0o022;
/// Forbids any permission for group and others (a key they could read).
pub(super) const OTHERS_ANY: u32 = 0o077;

/// This user's id, to name a per-user directory.
pub(super) fn uid() -> String {
    #[cfg(unix)]
    return rustix::process::geteuid().as_raw().to_string();
    #[cfg(not(unix))]
    return std::env::var("USERNAME").unwrap_or_default();
}

/// Creates `dir` (and missing parents) readable by this user only.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses `path` (a `what`) unless this user owns it and others have none
/// of the `forbidden` permission bits.
#[cfg_attr(not(unix), allow(unused_variables))]
pub(super) fn check(path: &Path, meta: &fs::Metadata, what: &str, forbidden: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refused(format!(
                "the {what} {} belongs to uid {}, not to this user (uid {me}); another user could replace the tokens it holds",
                path.display(),
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & forbidden != 0 {
            let access = if forbidden == OTHERS_WRITE { "writable" } else { "readable or writable" };
            return Err(refused(format!(
                "the {what} {} is {access} by other users (mode {mode:o}); run `chmod go-rwx` on it",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Opens `path` with `opts`, never through a symbolic link.
pub(super) fn open_no_follow(opts: &OpenOptions, path: &Path) -> io::Result<File> {
    let mut opts = opts.clone();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    opts.open(path)
}

/// Says that `path` is a symbolic link when that is why it did not open.
pub(super) fn no_follow_error(path: &Path, e: io::Error) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return refused(format!("{} is a symbolic link; the local store does not follow links", path.display()));
    }
    e
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

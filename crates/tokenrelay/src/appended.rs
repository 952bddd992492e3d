//! The site's `tokenrelay.toml` appended to a prebuilt function binary.
//!
//! Netlify zips a prebuilt Rust function as the Lambda `bootstrap` and
//! nothing else (`@netlify/zip-it-and-ship-it`, `zip_binary.js`), so a binary
//! shipped in the npm package cannot find the site's config beside it. The
//! build plugin (`netlify-plugin-tokenrelay`) copies the binary and has the
//! addon [`append`] the config with a trailer, which the Netlify function
//! [`read`]s at start; the ELF loader maps only what the program headers
//! name, so trailing bytes never reach the process image:
//!
//! ```text
//! <config, UTF-8> <its length, u64 little-endian> <MAGIC, 16 bytes>
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Ends every binary carrying a config.
const MAGIC: &[u8; 16] = b"tokenrelay.toml\0";
/// The trailer: the length, then [`MAGIC`].
const TRAILER_LEN: u64 = 8 + MAGIC.len() as u64;
/// A config file is a few kilobytes; a larger length means a damaged trailer.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Appends `config` and the trailer to the executable at `exe`.
pub fn append(exe: &Path, config: &[u8]) -> io::Result<()> {
    if config.len() as u64 > MAX_CONFIG_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a config over {MAX_CONFIG_BYTES} bytes")));
    }
    let mut file = OpenOptions::new().append(true).open(exe)?;
    let mut tail = config.to_vec();
    tail.extend_from_slice(&(config.len() as u64).to_le_bytes());
    tail.extend_from_slice(MAGIC);
    file.write_all(&tail)?;
    file.sync_all()
}

/// The config appended to the executable at `exe`, `None` when it carries none.
pub fn read(exe: &Path) -> Result<Option<String>> {
    let unreadable = |source: io::Error| Error::ConfigUnreadable { file: exe.to_owned(), source: source.into() };
    let damaged = |why: &str| unreadable(io::Error::new(io::ErrorKind::InvalidData, format!("appended config: {why}")));
    let mut file = File::open(exe).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if size < TRAILER_LEN {
        return Ok(None);
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(size - TRAILER_LEN)).and_then(|_| file.read_exact(&mut trailer)).map_err(unreadable)?;
    let (length, magic) = trailer.split_at(8);
    if magic != MAGIC {
        return Ok(None);
    }
    let length = u64::from_le_bytes(length.try_into().unwrap_or_default());
    if length > MAX_CONFIG_BYTES || length > size - TRAILER_LEN {
        return Err(damaged("its length is out of range"));
    }
    let mut text = vec![0u8; length as usize];
    file.seek(SeekFrom::Start(size - TRAILER_LEN - length))
        .and_then(|_| file.read_exact(&mut text))
        .map_err(unreadable)?;
    String::from_utf8(text).map(Some).map_err(|_| damaged("it is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn appended(config: &str) -> Vec<u8> {
        let (_dir, path) = binary(b"\x7fELF not really");
        append(&path, config.as_bytes()).unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn reads_the_config_it_appended() {
        let (_dir, path) = binary(&appended("[upstreams.x]\n"));
        assert_eq!(read(&path).unwrap().as_deref(), Some("[upstreams.x]\n"));
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x7fELF not really[upstreams.x]\n"), "the binary comes first, unchanged");
        assert!(bytes.ends_with(b"tokenrelay.toml\0"));
    }

    #[test]
    fn a_binary_without_trailer_carries_none() {
        let (_dir, path) = binary(b"\x7fELF plain binary, long enough for a trailer");
        assert_eq!(read(&path).unwrap(), None);
        let (_dir, path) = binary(b"short");
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn a_damaged_trailer_is_config_unreadable() {
        let mut bytes = appended("x");
        let at = bytes.len() - TRAILER_LEN as usize;
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let (_dir, path) = binary(&bytes);
        let err = read(&path).unwrap_err();
        assert_eq!(err.code(), "config_unreadable");
        assert!(err.to_string().contains("appended config: its length is out of range"), "{err}");
    }
}

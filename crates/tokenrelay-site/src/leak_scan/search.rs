//! One pass over a file for every form of every secret (aho-corasick),
//! reading it in chunks so memory stays bounded whatever its size, and
//! decoding compressed files first: a server sends `app.js.gz` or
//! `app.js.br` as `app.js`, so their content is published as much as the
//! plain file's, and Netlify deploys each function as a zip archive.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};

/// How much of a file is searched at a time.
const CHUNK: usize = 1 << 20;
/// The gzip magic number (RFC 1952 §2.3.1): such files are decoded whatever their name.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The zip local file header signature (APPNOTE.TXT §4.3.7): each entry is searched.
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
/// Brotli has no magic number (RFC 7932): files named `*.br` are decoded.
const BROTLI_EXTENSION: &str = "br";
/// Brotli decoder's input buffer.
const BROTLI_BUFFER: usize = 4096;

/// The patterns, each tied to the secret it is a form of.
pub(super) struct Searcher {
    matcher: AhoCorasick,
    /// `owner[i]`: the secret of pattern `i`.
    owner: Vec<usize>,
    /// Bytes kept between chunks so a match across their boundary is found.
    overlap: usize,
}

/// Why a file could not be searched.
pub(super) enum SearchError {
    /// Reading or decoding failed.
    Io(std::io::Error),
    /// The byte budget ran out while reading this file.
    OverBudget,
}

impl From<std::io::Error> for SearchError {
    fn from(e: std::io::Error) -> Self {
        SearchError::Io(e)
    }
}

impl Searcher {
    /// A searcher for `forms[i]`, every form of secret `i`.
    pub(super) fn new(forms: &[Vec<Vec<u8>>]) -> Result<Searcher, aho_corasick::BuildError> {
        let owner: Vec<usize> = forms.iter().enumerate().flat_map(|(i, f)| std::iter::repeat_n(i, f.len())).collect();
        let patterns: Vec<&Vec<u8>> = forms.iter().flatten().collect();
        let overlap = patterns.iter().map(|p| p.len()).max().unwrap_or(0).saturating_sub(1);
        // Standard semantics so overlapping search reports a secret even when
        // another one contains it.
        let matcher = AhoCorasick::builder().match_kind(MatchKind::Standard).build(patterns)?;
        Ok(Searcher { matcher, owner, overlap })
    }

    /// The secrets found in the file at `path`, decoded if compressed (gzip,
    /// brotli, or each entry of a zip archive, itself decoded if compressed:
    /// a function's zip may hold precompressed assets).
    /// Every byte searched (decoded bytes for a compressed file) is taken
    /// from `budget`.
    pub(super) fn search_file(&self, path: &Path, budget: &mut u64) -> Result<BTreeSet<usize>, SearchError> {
        let mut file = BufReader::new(std::fs::File::open(path)?);
        if !file.fill_buf()?.starts_with(&ZIP_MAGIC) {
            return self.search_decoded(file, path, budget);
        }
        let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
        let mut found = BTreeSet::new();
        for i in 0..archive.len() {
            let entry = archive.by_index(i).map_err(zip_error)?;
            let name = PathBuf::from(entry.name().map_err(zip_error)?.into_owned());
            found.extend(self.search_decoded(BufReader::new(entry), &name, budget)?);
        }
        Ok(found)
    }

    /// Searches `reader` (a file, or an entry of a zip archive named `name`),
    /// decoded first when compressed: gzip by its magic number, brotli by
    /// `name`'s extension.
    fn search_decoded(
        &self,
        mut reader: impl BufRead,
        name: &Path,
        budget: &mut u64,
    ) -> Result<BTreeSet<usize>, SearchError> {
        if reader.fill_buf()?.starts_with(&GZIP_MAGIC) {
            self.search(flate2::bufread::MultiGzDecoder::new(reader), budget)
        } else if name.extension().is_some_and(|e| e == BROTLI_EXTENSION) {
            self.search(brotli::Decompressor::new(reader, BROTLI_BUFFER), budget)
        } else {
            self.search(reader, budget)
        }
    }

    fn search(&self, mut reader: impl Read, budget: &mut u64) -> Result<BTreeSet<usize>, SearchError> {
        let mut found = BTreeSet::new();
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + self.overlap);
        loop {
            let kept = buf.len();
            buf.resize(kept + CHUNK, 0);
            let read = loop {
                match reader.read(&mut buf[kept..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            };
            buf.truncate(kept + read);
            if read == 0 {
                return Ok(found);
            }
            *budget = budget.checked_sub(read as u64).ok_or(SearchError::OverBudget)?;
            found.extend(self.matcher.find_overlapping_iter(&buf).map(|m| self.owner[m.pattern().as_usize()]));
            let keep = self.overlap.min(buf.len());
            buf.drain(..buf.len() - keep);
        }
    }
}

fn zip_error(e: zip::result::ZipError) -> SearchError {
    match e {
        zip::result::ZipError::Io(e) => SearchError::Io(e),
        other => SearchError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, other)),
    }
}

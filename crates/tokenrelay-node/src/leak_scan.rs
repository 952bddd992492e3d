//! `scanForLeaks`: search a build's output directory for the value of any
//! token, credential or store secret, so a site that would publish one fails
//! its build instead.
//!
//! The secrets are the values of environment variables, found by name: the
//! token variables the caller names, every variable the config reads a
//! credential from ([`tokenrelay::Config::secret_vars`]), and the store's
//! token and encryption key. Values never leave this module: a finding names
//! the file and the variable.
//!
//! Each value is searched as is and URL-encoded (as `encodeURIComponent`
//! writes it); other encodings (base64 inside a Basic auth header, JSON
//! `\/` escapes) are not recognised. Symlinked files are read; symlinked
//! directories are not entered, so a cycle cannot hang the scan.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};
use napi_derive::napi;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokenrelay::{Config, ENCRYPTION_KEY_VAR, UPSTASH_VARS, VERCEL_KV_VARS};

use crate::error::{AddonError, codes};
use crate::site::{Site, SiteOptions, StoreChoice};

/// Values shorter than this are not searched: they would match ordinary
/// text, and a credential this short is no secret anyway. They are listed in
/// [`ScanReport::too_short`].
pub const MIN_SCANNED_LEN: usize = 8;

/// What `encodeURIComponent` escapes: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Options of `scanForLeaks`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct ScanOptions {
    /// The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`.
    pub config_path: Option<String>,
    /// The site's directory: the scanned directory and the config are relative to it. Default: the current directory.
    pub cwd: Option<String>,
    /// Variables that override the process environment; `""` unsets one.
    pub env: Option<HashMap<String, String>>,
    /// Variables holding tokens handed to the build (e.g. by `prefetch`), whose values must not be published.
    pub token_vars: Option<Vec<String>>,
}

/// The outcome of a scan.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Every file that holds a secret, once per secret; empty when the output is clean.
    pub leaks: Vec<Leak>,
    /// How many files were read.
    pub files_scanned: u32,
    /// How many secrets were searched for.
    pub secrets_scanned: u32,
    /// Variables whose values were too short to search for (under 8 characters).
    pub too_short: Vec<String>,
}

/// A secret found in a file, named but never shown.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The file, relative to the scanned directory, with `/` separators.
    pub file: String,
    /// What was found: a token handed to the build, an upstream credential, or a store secret.
    #[napi(ts_type = "'token' | 'credential' | 'store'")]
    pub kind: String,
    /// The environment variable whose value was found.
    pub variable: String,
    /// A description for messages, e.g. `$API_SECRET (token.client_secret of upstream "getty")`.
    pub secret: String,
}

/// A value to search for. `Debug` never shows the value.
struct Secret {
    kind: &'static str,
    variable: String,
    description: String,
    value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("variable", &self.variable).field("value", &"[REDACTED]").finish()
    }
}

/// Runs `scanForLeaks` on `dir` (relative to the site's directory).
pub async fn scan_for_leaks(dir: String, options: ScanOptions) -> Result<ScanReport, AddonError> {
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let config = Config::load(&site.env)?;
    let secrets = secrets(&site, &config, options.token_vars.as_deref().unwrap_or_default());
    let root = site.dir.join(dir);
    // Reading a whole publish directory blocks: keep it off the async workers.
    tokio::task::spawn_blocking(move || scan(&root, secrets))
        .await
        .map_err(|e| AddonError::new(codes::SCAN_FAILED, format!("the scan stopped unexpectedly: {e}")))?
}

/// The secrets to look for, each variable once, tokens first.
fn secrets(site: &Site, config: &Config, token_vars: &[String]) -> Vec<Secret> {
    let tokens = token_vars.iter().map(|v| ("token", v.clone(), format!("the token in ${v}")));
    let credentials = config
        .secret_vars()
        .into_iter()
        .map(|v| ("credential", v.name.clone(), format!("${} ({} of upstream \"{}\")", v.name, v.field, v.upstream)));
    let store = [UPSTASH_VARS.1, VERCEL_KV_VARS.1, ENCRYPTION_KEY_VAR]
        .into_iter()
        .map(|v| ("store", v.to_owned(), format!("${v} (shared store)")));
    let mut out: Vec<Secret> = Vec::new();
    for (kind, variable, description) in tokens.chain(credentials).chain(store) {
        if out.iter().any(|s| s.variable == variable) {
            continue;
        }
        if let Some(value) = site.env.get(&variable) {
            out.push(Secret { kind, variable, description, value: value.to_owned() });
        }
    }
    out
}

/// Searches every file under `root` for every secret.
fn scan(root: &Path, secrets: Vec<Secret>) -> Result<ScanReport, AddonError> {
    let (searched, too_short): (Vec<Secret>, Vec<Secret>) =
        secrets.into_iter().partition(|s| s.value.chars().count() >= MIN_SCANNED_LEN);
    // Each secret as written and URL-encoded; `owner[i]` is the secret of pattern `i`.
    let mut patterns: Vec<String> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (i, s) in searched.iter().enumerate() {
        let encoded = utf8_percent_encode(&s.value, URI_COMPONENT).to_string();
        let forms = if encoded == s.value { vec![encoded] } else { vec![s.value.clone(), encoded] };
        owner.extend(std::iter::repeat_n(i, forms.len()));
        patterns.extend(forms);
    }
    // Standard semantics so overlapping search reports a secret even when
    // another one contains it.
    let matcher = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(&patterns)
        .map_err(|e| AddonError::new(codes::SCAN_FAILED, format!("cannot build the search: {e}")))?;

    let mut report = ScanReport {
        leaks: Vec::new(),
        files_scanned: 0,
        secrets_scanned: u32::try_from(searched.len()).unwrap_or(u32::MAX),
        too_short: too_short.into_iter().map(|s| s.variable).collect(),
    };
    for file in files(root)? {
        let bytes = std::fs::read(&file).map_err(|e| unreadable(&file, &e))?;
        report.files_scanned += 1;
        let found: BTreeSet<usize> =
            matcher.find_overlapping_iter(&bytes).map(|m| owner[m.pattern().as_usize()]).collect();
        for i in found {
            let s = &searched[i];
            report.leaks.push(Leak {
                file: relative(root, &file),
                kind: s.kind.to_owned(),
                variable: s.variable.clone(),
                secret: s.description.clone(),
            });
        }
    }
    Ok(report)
}

/// Every regular file under `root` (following symlinked files, not
/// symlinked directories), in a stable order.
fn files(root: &Path) -> Result<Vec<PathBuf>, AddonError> {
    if !root.is_dir() {
        return Err(AddonError::new(
            codes::SCAN_FAILED,
            format!("{} is not a directory: check the publish directory", root.display()),
        ));
    }
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| unreadable(&dir, &e))?;
        let mut paths: Vec<PathBuf> =
            entries.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(|e| unreadable(&dir, &e))?;
        paths.sort();
        for path in paths.into_iter().rev() {
            let link = std::fs::symlink_metadata(&path).map_err(|e| unreadable(&path, &e))?;
            if link.is_dir() {
                dirs.push(path);
            } else if link.is_file() || (link.is_symlink() && path.is_file()) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn unreadable(path: &Path, e: &std::io::Error) -> AddonError {
    AddonError::new(codes::SCAN_FAILED, format!("cannot read {}: {e}", path.display()))
}

fn relative(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(kind: &'static str, variable: &str, value: &str) -> Secret {
        Secret { kind, variable: variable.into(), description: format!("${variable}"), value: value.into() }
    }

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn finds_each_secret_in_each_file_as_written_and_url_encoded() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "index.html", "<p>hello</p>");
        write(tmp.path(), "assets/app.js", "const t = 'tok_0123456789abcdef';");
        write(tmp.path(), "assets/deep/data.json", "{\"u\":\"https://x/?k=s%2Fcr%3Dt%2Bvalue\"}");
        let secrets = vec![secret("token", "T", "tok_0123456789abcdef"), secret("credential", "S", "s/cr=t+value")];
        let report = scan(tmp.path(), secrets).unwrap();
        let found: Vec<(&str, &str)> = report.leaks.iter().map(|l| (l.file.as_str(), l.variable.as_str())).collect();
        assert_eq!(found, [("assets/app.js", "T"), ("assets/deep/data.json", "S")]);
        assert_eq!((report.files_scanned, report.secrets_scanned), (3, 2));
    }

    #[test]
    fn a_secret_inside_another_secret_is_still_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.txt", "prefix-client-secret-value-suffix");
        let secrets =
            vec![secret("token", "LONG", "prefix-client-secret-value"), secret("credential", "SHORT", "client-secret")];
        let report = scan(tmp.path(), secrets).unwrap();
        let vars: Vec<&str> = report.leaks.iter().map(|l| l.variable.as_str()).collect();
        assert_eq!(vars, ["LONG", "SHORT"]);
    }

    #[test]
    fn short_values_are_listed_not_searched() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.txt", "id=abc");
        let report = scan(tmp.path(), vec![secret("credential", "ID", "abc")]).unwrap();
        assert_eq!((report.leaks.len(), report.secrets_scanned), (0, 0));
        assert_eq!(report.too_short, ["ID"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_files_are_read_and_symlinked_directories_not_entered() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "tok_0123456789abcdef");
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), tmp.path().join("linked.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("loop")).unwrap();
        let report = scan(tmp.path(), vec![secret("token", "T", "tok_0123456789abcdef")]).unwrap();
        assert_eq!(report.leaks.iter().map(|l| l.file.as_str()).collect::<Vec<_>>(), ["linked.txt"]);
    }

    #[test]
    fn a_missing_directory_is_a_scan_failure_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = scan(&tmp.path().join("dist"), vec![]).unwrap_err();
        assert_eq!(err.code(), "scan_failed");
        assert!(err.message().contains("dist is not a directory: check the publish directory"), "{err}");
    }

    #[test]
    fn debug_of_a_secret_hides_its_value() {
        let shown = format!("{:?}", secret("token", "T", "tok_0123456789abcdef"));
        assert!(shown.contains("[REDACTED]") && !shown.contains("tok_0123"), "{shown}");
    }
}

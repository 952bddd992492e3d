//! The leak scan (the addon's `scanForLeaks`): search a build's output
//! directory for any token, credential or store secret, so a site that would
//! publish one fails its build instead.
//!
//! The secrets: every token the caller says it handed out ([`HandedOut`]),
//! the values of the token variables the caller names, of every variable the
//! config reads a credential from ([`tokenrelay::Config::secret_vars`], relay
//! headers included), of the store's token and encryption key, and of the
//! other secrets a store integration sets (a read-only token, a `redis://`
//! URL and the password inside it). Each is
//! searched in every form [`forms`] lists (raw, percent-, form-, JSON-,
//! HTML-escaped, base64), in one pass per file ([`search`]), through
//! precompressed `.gz`/`.br` files and zip archives, and reporting symbolic links that
//! point outside the directory ([`walk`]). Values never leave this module: a finding names the file and
//! the variable (or the upstream, for a token without one).

mod forms;
mod search;
mod walk;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use tokenrelay::{Config, ENCRYPTION_KEY_VAR, UPSTASH_VARS, VERCEL_KV_VARS};

use crate::Error;
use crate::site::{Site, SiteOptions, StoreChoice};
use search::{SearchError, Searcher};

/// Values shorter than this are not searched: they would match ordinary
/// text, and a credential this short is no secret anyway. They are listed in
/// [`ScanReport::too_short`].
pub const MIN_SCANNED_LEN: usize = 8;

/// Variables a store integration sets beside the ones tokenrelay reads:
/// Upstash for Redis on the Vercel Marketplace (formerly Vercel KV) adds a
/// read-only REST token and the database's Redis URL, under both names
/// (https://upstash.com/docs/redis/howto/vercelintegration). tokenrelay never
/// reads them, but they reach the build all the same.
const STORE_INTEGRATION_VARS: [&str; 3] = ["KV_REST_API_READ_ONLY_TOKEN", REDIS_URL_VARS[0], REDIS_URL_VARS[1]];
/// Of those, the ones holding a `redis://` URL, whose password is searched for on its own too.
const REDIS_URL_VARS: [&str; 2] = ["KV_URL", "REDIS_URL"];

/// How many bytes a scan reads at most by default (decompressed content
/// counted): far above a static site's output, low enough that a
/// decompression bomb or a stray disk image fails fast. See [`ScanOptions::max_bytes`].
pub const DEFAULT_MAX_SCAN_BYTES: NonZeroU64 = NonZeroU64::MIN.saturating_add((1 << 30) - 1);

/// What to scan for, besides the config's credentials and the store's secrets.
#[derive(Debug, Clone)]
pub struct ScanOptions<'a> {
    /// The site: the scanned directory and the config are relative to it.
    pub site: SiteOptions<'a>,
    /// Variables holding tokens handed to the build (e.g. by `prefetch`), whose values must not be published.
    pub token_vars: &'a [String],
    /// Tokens the caller handed out itself, whichever variable holds them now.
    pub handed_out: &'a [HandedOut],
    /// How many bytes to read at most, decompressed content included; past
    /// it the scan fails with `scan_too_large`.
    pub max_bytes: NonZeroU64,
}

impl Default for ScanOptions<'_> {
    fn default() -> Self {
        ScanOptions {
            site: SiteOptions::default(),
            token_vars: &[],
            handed_out: &[],
            max_bytes: DEFAULT_MAX_SCAN_BYTES,
        }
    }
}

/// A token handed out to a build, and by whom (the addon's `prefetch` or `getToken`).
#[derive(Debug, Clone)]
pub struct HandedOut {
    /// The upstream whose token it is.
    pub upstream: String,
    /// What handed it out, for the finding's description.
    pub by: &'static str,
    /// The token.
    pub token: SecretString,
}

/// The outcome of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Every file that holds a secret, once per secret; empty when the output is clean.
    pub leaks: Vec<Leak>,
    /// Symbolic links pointing outside the directory: not followed, but
    /// what they point to would be published. Empty when the output is clean.
    pub outside_links: Vec<OutsideLink>,
    /// How many files were read.
    pub files_scanned: u64,
    /// How many bytes were searched (decompressed content included).
    pub bytes_scanned: u64,
    /// How many secrets were searched for.
    pub secrets_scanned: u64,
    /// Variables whose values were too short to search for (under [`MIN_SCANNED_LEN`] characters).
    pub too_short: Vec<String>,
}

/// A secret found in a file, named but never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The file, relative to the scanned directory, with `/` separators.
    pub file: String,
    pub kind: SecretKind,
    /// The environment variable whose value was found; `None` for a
    /// [`HandedOut`] token that no named variable holds.
    pub variable: Option<String>,
    /// A description for messages, e.g. `$API_SECRET (token.client_secret of upstream "getty")`.
    pub secret: String,
}

/// What a secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A token handed to the build.
    Token,
    /// An upstream credential the config reads.
    Credential,
    /// A secret of the shared store.
    Store,
}

impl SecretKind {
    /// `"token"`, `"credential"` or `"store"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Token => "token",
            SecretKind::Credential => "credential",
            SecretKind::Store => "store",
        }
    }
}

/// A symbolic link whose target is outside the scanned directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideLink {
    /// The link, relative to the scanned directory, with `/` separators.
    pub file: String,
    /// Where it points (canonical path).
    pub target: PathBuf,
}

/// A value to search for. `Debug` never shows the value.
struct Secret {
    kind: SecretKind,
    variable: Option<String>,
    description: String,
    value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("variable", &self.variable).field("value", &"[REDACTED]").finish()
    }
}

/// Scans `dir` (relative to the site's directory) for every secret the
/// site's environment and config name, and the tokens `options` lists.
/// Blocks while it reads the whole directory.
pub fn scan_for_leaks(dir: &Path, options: &ScanOptions<'_>) -> Result<ScanReport, Error> {
    let site = Site::resolve(options.site, StoreChoice::AsConfigured)?;
    let config = Config::load(&site.env)?;
    let secrets = secrets(&site, &config, options.token_vars, options.handed_out);
    scan(&site.dir.join(dir), secrets, options.max_bytes.get())
}

/// The secrets to look for, each value once: tokens first, then credentials, then store secrets.
fn secrets(site: &Site, config: &Config, token_vars: &[String], handed_out: &[HandedOut]) -> Vec<Secret> {
    let named = |kind: SecretKind, variable: &str, description: String| {
        site.env.get(variable).map(|value| Secret {
            kind,
            variable: Some(variable.to_owned()),
            description,
            value: value.to_owned(),
        })
    };
    let mut all: Vec<Secret> =
        token_vars.iter().filter_map(|v| named(SecretKind::Token, v, format!("the token in ${v}"))).collect();
    all.extend(handed_out.iter().map(|h| Secret {
        kind: SecretKind::Token,
        variable: None,
        description: format!("a token of upstream \"{}\" handed out by {}", h.upstream, h.by),
        value: h.token.expose_secret().to_owned(),
    }));
    for v in config.secret_vars() {
        all.extend(named(
            SecretKind::Credential,
            &v.name,
            format!("${} ({} of upstream \"{}\")", v.name, v.field, v.upstream),
        ));
    }
    for v in [UPSTASH_VARS.1, VERCEL_KV_VARS.1, ENCRYPTION_KEY_VAR].into_iter().chain(STORE_INTEGRATION_VARS) {
        all.extend(named(SecretKind::Store, v, format!("${v} (shared store)")));
    }
    for v in REDIS_URL_VARS {
        if let Some(password) = site.env.get(v).and_then(redis_password) {
            all.push(Secret {
                kind: SecretKind::Store,
                variable: Some(v.to_owned()),
                description: format!("the password in ${v} (shared store)"),
                value: password,
            });
        }
    }
    // A variable has one value, so each value once is each variable once too
    // (the password inside a URL is a value of its own).
    let mut out: Vec<Secret> = Vec::new();
    for s in all {
        if !out.iter().any(|o| o.value == s.value) {
            out.push(s);
        }
    }
    out
}

/// The password of a Redis URL (`redis://user:password@host`, `rediss://`
/// for TLS; IANA's `redis` scheme), decoded: a build that writes only the
/// password, or the URL with the password escaped differently, leaks it all
/// the same.
fn redis_password(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return None;
    }
    let password = percent_encoding::percent_decode_str(url.password()?).decode_utf8().ok()?;
    (!password.is_empty()).then(|| password.into_owned())
}

/// Searches every file under `root` for every secret, reading at most `max_bytes`.
fn scan(root: &Path, secrets: Vec<Secret>, max_bytes: u64) -> Result<ScanReport, Error> {
    if !root.is_dir() {
        return Err(Error::ScanNotADirectory { dir: root.to_owned() });
    }
    let (searched, too_short): (Vec<Secret>, Vec<Secret>) =
        secrets.into_iter().partition(|s| s.value.chars().count() >= MIN_SCANNED_LEN);
    let forms: Vec<Vec<Vec<u8>>> = searched.iter().map(|s| forms::forms(&s.value)).collect();
    let searcher = Searcher::new(&forms)?;
    let walk = walk::walk(root).map_err(|source| Error::ScanUnreadable { path: root.to_owned(), source })?;

    let mut report = ScanReport {
        leaks: Vec::new(),
        outside_links: walk.outside.into_iter().map(|l| OutsideLink { file: l.link, target: l.target }).collect(),
        files_scanned: 0,
        bytes_scanned: 0,
        secrets_scanned: searched.len() as u64,
        too_short: too_short.into_iter().filter_map(|s| s.variable).collect(),
    };
    let mut budget = max_bytes;
    for file in walk.files {
        let found = searcher.search_file(&file.path, &mut budget).map_err(|e| match e {
            SearchError::Io(source) => Error::ScanUnreadable { path: file.path.clone(), source },
            SearchError::OverBudget => {
                Error::ScanTooLarge { dir: root.to_owned(), max_bytes, reached_at: file.shown.clone() }
            }
        })?;
        report.files_scanned += 1;
        for i in found {
            let s = &searched[i];
            report.leaks.push(Leak {
                file: file.shown.clone(),
                kind: s.kind,
                variable: s.variable.clone(),
                secret: s.description.clone(),
            });
        }
    }
    report.bytes_scanned = max_bytes - budget;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use base64::Engine;

    use super::*;

    const TOKEN: &str = "tok_0123456789/abc+def";

    fn secret(kind: SecretKind, variable: &str, value: &str) -> Secret {
        Secret { kind, variable: Some(variable.into()), description: format!("${variable}"), value: value.into() }
    }

    fn write(root: &Path, file: &str, bytes: &[u8]) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// (file, variable) of each finding.
    fn found(root: &Path, secrets: Vec<Secret>) -> Vec<(String, String)> {
        let report = scan(root, secrets, DEFAULT_MAX_SCAN_BYTES.get()).unwrap();
        report.leaks.into_iter().map(|l| (l.file, l.variable.unwrap_or_default())).collect()
    }

    #[test]
    fn finds_a_secret_in_each_form_a_build_writes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let b64url = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
        let cases = [
            ("raw.js", format!("const t = '{TOKEN}';")),
            ("upper.html", "<a href=\"/?t=tok_0123456789%2Fabc%2Bdef\">".to_owned()),
            ("lower.html", "<a href=\"/?t=tok_0123456789%2fabc%2bdef\">".to_owned()),
            ("form.txt", "t=tok_0123456789%2Fabc%2Bdef&x=1".to_owned()),
            ("slash.json", "{\"t\":\"tok_0123456789\\/abc+def\"}".to_owned()),
            ("unicode.json", "{\"t\":\"tok_0123456789\\u002Fabc+def\"}".to_owned()),
            ("entity.html", "<p data-t=\"tok_0123456789&#x2F;abc+def\">".to_owned()),
            ("basic.txt", format!("Authorization: Basic {}", b64(&format!("client:{TOKEN}")))),
            ("b64-1.txt", b64(&format!("x{TOKEN}y"))),
            ("b64-2.txt", b64(&format!("xy{TOKEN}"))),
            ("b64url.txt", b64url(&format!("{{\"t\":\"{TOKEN}\"}}"))),
            ("clean.html", "<p>tok_0123456789 abc def</p>".to_owned()),
        ];
        for (file, text) in &cases {
            write(tmp.path(), file, text.as_bytes());
        }
        let hits: Vec<String> =
            found(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)]).into_iter().map(|(f, _)| f).collect();
        let mut expected: Vec<&str> = cases.iter().map(|(f, _)| *f).filter(|f| *f != "clean.html").collect();
        expected.sort();
        assert_eq!(hits, expected);
    }

    #[test]
    fn compressed_files_and_zip_entries_are_decoded() {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!("var t = \"{TOKEN}\";").repeat(100);
        write(tmp.path(), "app.js.gz", &gzipped(text.as_bytes()));
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 11, 22).write_all(text.as_bytes()).unwrap();
        write(tmp.path(), "app.js.br", &br);
        let zip = zipped(&[("index.html", b"<p>clean</p>"), ("handler.mjs", text.as_bytes())]);
        write(tmp.path(), "functions/relay.zip", &zip);
        let hits: Vec<String> =
            found(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)]).into_iter().map(|(f, _)| f).collect();
        assert_eq!(hits, ["app.js.br", "app.js.gz", "functions/relay.zip"]);
    }

    /// A zip holding `entries`, deflated.
    fn zipped(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, deflated).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn gzipped(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_precompressed_file_inside_a_zip_is_decoded_within_the_byte_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!("var t = \"{TOKEN}\";").repeat(100);
        write(tmp.path(), "functions/relay.zip", &zipped(&[("static/app.js.gz", &gzipped(text.as_bytes()))]));
        let hits: Vec<String> =
            found(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)]).into_iter().map(|(f, _)| f).collect();
        assert_eq!(hits, ["functions/relay.zip"]);

        // What the entry decodes to counts, not its compressed size: a bomb fails the scan.
        let bomb = gzipped(&vec![b'0'; 1 << 20]);
        write(tmp.path(), "functions/relay.zip", &zipped(&[("bomb.gz", &bomb)]));
        let err = scan(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)], 1 << 19).unwrap_err();
        assert_eq!(err.code(), "scan_too_large");
        assert!(err.to_string().contains("at functions/relay.zip"), "{err}");
    }

    #[test]
    fn the_password_of_a_redis_url_is_a_secret_of_its_own() {
        assert_eq!(redis_password("rediss://default:p%40ss-w0rd@eu1.upstash.io:6379").as_deref(), Some("p@ss-w0rd"));
        assert_eq!(redis_password("redis://:only-password@localhost").as_deref(), Some("only-password"));
        for none in ["redis://localhost:6379", "https://user:pw@example.com", "not a url"] {
            assert_eq!(redis_password(none), None, "{none}");
        }
    }

    #[test]
    fn a_secret_across_read_chunks_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = vec![b'x'; (1 << 20) - 5];
        text.extend_from_slice(TOKEN.as_bytes());
        write(tmp.path(), "big.bin", &text);
        assert_eq!(found(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)]).len(), 1);
    }

    #[test]
    fn past_the_byte_limit_the_scan_fails_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.txt", &[b'a'; 600]);
        write(tmp.path(), "b.txt", &[b'b'; 600]);
        let err = scan(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)], 1000).unwrap_err();
        assert_eq!(err.code(), "scan_too_large");
        assert!(
            err.to_string().contains("more than 1000 bytes to search") && err.to_string().contains("at b.txt"),
            "{err}"
        );
        assert_eq!(scan(tmp.path(), vec![], 1200).unwrap().bytes_scanned, 1200);
    }

    #[cfg(unix)]
    #[test]
    fn links_outside_are_reported_and_what_links_inside_point_to_searched() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", TOKEN.as_bytes());
        write(tmp.path(), "real/app.js", TOKEN.as_bytes());
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), tmp.path().join("linked.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("alias")).unwrap();
        let report =
            scan(tmp.path(), vec![secret(SecretKind::Token, "T", TOKEN)], DEFAULT_MAX_SCAN_BYTES.get()).unwrap();
        assert_eq!(report.leaks.iter().map(|l| l.file.as_str()).collect::<Vec<_>>(), ["real/app.js"]);
        assert_eq!(report.outside_links.iter().map(|l| l.file.as_str()).collect::<Vec<_>>(), ["linked.txt"]);
    }

    #[test]
    fn a_secret_inside_another_secret_is_still_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.txt", b"prefix-client-secret-value-suffix");
        let secrets = vec![
            secret(SecretKind::Token, "LONG", "prefix-client-secret-value"),
            secret(SecretKind::Credential, "SHORT", "client-secret"),
        ];
        let vars: Vec<String> = found(tmp.path(), secrets).into_iter().map(|(_, v)| v).collect();
        assert_eq!(vars, ["LONG", "SHORT"]);
    }

    #[test]
    fn short_values_are_listed_not_searched() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.txt", b"id=abc");
        let report =
            scan(tmp.path(), vec![secret(SecretKind::Credential, "ID", "abc")], DEFAULT_MAX_SCAN_BYTES.get()).unwrap();
        assert_eq!((report.leaks.len(), report.secrets_scanned), (0, 0));
        assert_eq!(report.too_short, ["ID"]);
    }

    #[test]
    fn a_missing_directory_is_a_scan_failure_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = scan(&tmp.path().join("dist"), vec![], DEFAULT_MAX_SCAN_BYTES.get()).unwrap_err();
        assert_eq!(err.code(), "scan_failed");
        assert!(err.to_string().contains("dist is not a directory: check the publish directory"), "{err}");
    }

    #[test]
    fn debug_of_a_secret_hides_its_value() {
        let shown = format!("{:?}", secret(SecretKind::Token, "T", TOKEN));
        assert!(shown.contains("[REDACTED]") && !shown.contains("tok_0123"), "{shown}");
    }
}

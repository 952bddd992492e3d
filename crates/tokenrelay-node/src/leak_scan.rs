//! `scanForLeaks`' JS face: its options and report as napi objects,
//! converted to and from [`tokenrelay_site::scan_for_leaks`]'s types (the
//! scan lives there), plus the tokens this process handed out ([`crate::issued`]).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;

use napi_derive::napi;
use tokenrelay::Broker;
use tokenrelay_site::leak_scan::DEFAULT_MAX_SCAN_BYTES;
use tokenrelay_site::{Site, SiteCode, SiteOptions, StoreChoice};

use crate::error::AddonError;

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
    /// How many bytes to read at most, decompressed content included; past
    /// it the scan fails with `scan_too_large`. Default: 1 GiB.
    pub max_bytes: Option<i64>,
}

/// The outcome of a scan.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Every file that holds a secret, once per secret; empty when the output is clean.
    pub leaks: Vec<Leak>,
    /// Symbolic links pointing outside the directory: not followed, but
    /// what they point to would be published. Empty when the output is clean.
    pub outside_links: Vec<OutsideLink>,
    /// How many files were read.
    pub files_scanned: u32,
    /// How many bytes were searched (decompressed content included).
    pub bytes_scanned: i64,
    /// How many secrets were searched for.
    pub secrets_scanned: u32,
    /// Variables whose values were too short to search for (under 8 characters).
    pub too_short: Vec<String>,
    /// The `leak` alert to the config's `[alerts] webhook`: `"sent"`, or why
    /// it was not; absent when nothing leaked or the config has no `[alerts]`.
    pub alert: Option<String>,
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
    /// The environment variable whose value was found; absent for a token
    /// this process handed out that no named variable holds.
    pub variable: Option<String>,
    /// A description for messages, e.g. `$API_SECRET (token.client_secret of upstream "getty")`.
    pub secret: String,
}

/// A symbolic link whose target is outside the scanned directory.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideLink {
    /// The link, relative to the scanned directory, with `/` separators.
    pub file: String,
    /// Where it points (absolute).
    pub target: String,
}

/// Runs `scanForLeaks` on `dir` (relative to the site's directory).
pub async fn scan_for_leaks(dir: String, options: ScanOptions) -> Result<ScanReport, AddonError> {
    let max_bytes = match options.max_bytes {
        None => DEFAULT_MAX_SCAN_BYTES,
        Some(n) => u64::try_from(n)
            .ok()
            .and_then(NonZeroU64::new)
            .ok_or_else(|| AddonError::invalid_option("maxBytes", format!("{n} is not a positive number of bytes")))?,
    };
    let handed_out = crate::issued::all();
    let site = (options.config_path.clone(), options.cwd.clone(), options.env.clone());
    // Reading a whole publish directory blocks: keep it off the async workers.
    let scanned = tokio::task::spawn_blocking(move || {
        let scan = tokenrelay_site::ScanOptions {
            site: SiteOptions::of(&options.config_path, &options.cwd, &options.env),
            token_vars: options.token_vars.as_deref().unwrap_or_default(),
            handed_out: &handed_out,
            max_bytes,
        };
        tokenrelay_site::scan_for_leaks(Path::new(&dir), &scan)
    })
    .await
    .map_err(|e| AddonError::new(SiteCode::ScanFailed.as_str(), format!("the scan stopped unexpectedly: {e}")))?;
    let report = scanned?;
    let found: Vec<String> = report.leaks.iter().map(|l| format!("{}: {}", l.file, l.secret)).collect();
    let alert = if found.is_empty() { None } else { alert_leak(&site, &found).await };
    Ok(ScanReport {
        leaks: report
            .leaks
            .into_iter()
            .map(|l| Leak { file: l.file, kind: l.kind.as_str().to_owned(), variable: l.variable, secret: l.secret })
            .collect(),
        outside_links: report
            .outside_links
            .into_iter()
            .map(|l| OutsideLink { file: l.file, target: l.target.display().to_string() })
            .collect(),
        files_scanned: u32::try_from(report.files_scanned).unwrap_or(u32::MAX),
        bytes_scanned: i64::try_from(report.bytes_scanned).unwrap_or(i64::MAX),
        secrets_scanned: u32::try_from(report.secrets_scanned).unwrap_or(u32::MAX),
        too_short: report.too_short,
        alert,
    })
}

/// Sends the `leak` alert for `found` (each "file: variable", never a
/// value) when the site's config has `[alerts]`; says how it went. The scan's
/// own verdict stands whatever happens here.
async fn alert_leak(
    (config_path, cwd, env): &(Option<String>, Option<String>, Option<HashMap<String, String>>),
    found: &[String],
) -> Option<String> {
    let site = Site::resolve(SiteOptions::of(config_path, cwd, env), StoreChoice::AsConfigured).ok()?;
    let broker = Broker::from_env(&site.env).ok()?;
    if !tokenrelay::alerts::configured(&broker) {
        return None;
    }
    Some(match tokenrelay::alerts::send_leak(&broker, found).await {
        Ok(()) => "sent".to_owned(),
        Err(e) => e.to_string(),
    })
}

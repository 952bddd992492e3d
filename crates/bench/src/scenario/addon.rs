//! Build time: the Node addon's load time and its prefetch overhead beyond
//! the token endpoint's own latency. The addon's own script (bench/addon.mjs)
//! measures them with its stand-ins; this runs it on the release builds next
//! to this binary and reads its `=> label  N ms` summary lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::plan::Plan;

/// Summary line of the addon's load time.
const LOAD_LINE: &str = "addon load time";
/// Summary line of prefetch's overhead with the Upstash store.
const OVERHEAD_LINE: &str = "prefetch overhead beyond the endpoint (Upstash)";
/// The release build of the addon, as cargo names the cdylib.
const ADDON_LIB: &str = "libtokenrelay_node.so";
/// Longest the script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// What the addon's bench measured, in milliseconds.
#[derive(Debug, Clone)]
pub struct Addon {
    pub load_ms: f64,
    pub prefetch_overhead_ms: f64,
    /// Which build of the addon was measured.
    pub build: &'static str,
}

/// Runs `script`; `Err` says why there are no figures.
pub async fn run(script: &Path, scratch: &Path, plan: &Plan) -> Result<Addon, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin_dir = exe.parent().unwrap_or(Path::new("."));
    let mut command = Command::new("node");
    command.arg(script).args(["--runs", &plan.addon_runs.to_string()]).kill_on_drop(true);
    // The stand-ins the script starts: this build's, when they are there.
    for (var, bin) in [("UPSTASH_LOCAL_BIN", "upstash-local"), ("STAND_IN_API_BIN", "stand-in-api")] {
        let path = bin_dir.join(bin);
        if path.is_file() {
            command.env(var, path);
        }
    }
    // Node loads an addon by its `.node` extension: copy cargo's cdylib to one.
    let lib = bin_dir.join(ADDON_LIB);
    let build = if lib.is_file() {
        let addon = scratch.join("tokenrelay.node");
        std::fs::copy(&lib, &addon).map_err(|e| format!("copying {}: {e}", lib.display()))?;
        command.env("NAPI_RS_NATIVE_LIBRARY_PATH", addon);
        "this build's"
    } else {
        "crates/tokenrelay-node's (napi build)"
    };
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("{} took over {SCRIPT_TIMEOUT:?}", script.display()))?
        .map_err(|e| format!("cannot run node: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(format!("{} failed: {last}", script.display()));
    }
    let summary = summary_lines(&stdout);
    let read = |label: &str| summary.get(label).copied().ok_or_else(|| format!("no \"=> {label}\" line in its output"));
    Ok(Addon { load_ms: read(LOAD_LINE)?, prefetch_overhead_ms: read(OVERHEAD_LINE)?, build })
}

/// `=> label   12.34 ms` lines, by label.
fn summary_lines(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("=> ")?.strip_suffix(" ms")?;
            let (label, value) = rest.trim_end().rsplit_once(char::is_whitespace)?;
            Some((label.trim().to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_summary_lines() {
        let text = "import of an empty module   median 30.00 ms\n\
                    => addon load time                                          12.50 ms\n\
                    => prefetch overhead beyond the endpoint (Upstash)          -0.25 ms\n";
        let summary = summary_lines(text);
        assert_eq!(summary.get(LOAD_LINE), Some(&12.5));
        assert_eq!(summary.get(OVERHEAD_LINE), Some(&-0.25));
        assert_eq!(summary.len(), 2);
    }
}

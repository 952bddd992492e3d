//! `init`'s JS face: its options and report as napi objects, converted to
//! and from [`tokenrelay_site::init()`]'s types (the planning and merging
//! live there).

use std::path::PathBuf;

use napi_derive::napi;
use tokenrelay_site::{Framework, Platform};

use crate::error::AddonError;

/// Options of `init`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct InitOptions {
    /// The site's directory (default: the current directory).
    pub cwd: Option<String>,
    /// `"netlify"` or `"vercel"`; detected from the site when not given.
    pub platform: Option<String>,
    /// `"next"`, `"astro"`, `"sveltekit"` or `"netlify-functions"`: the site's
    /// framework serves the relay through `tokenrelay/fetch`, instead of the
    /// platform's Rust function.
    pub framework: Option<String>,
    /// `true` writes the planned changes; otherwise nothing is written.
    pub write: Option<bool>,
}

/// What `init` did (or, without `write`, would do).
#[napi(object)]
#[derive(Debug, Clone)]
pub struct InitReport {
    /// `"netlify"` or `"vercel"`.
    pub platform: String,
    /// Why that platform: `"--platform"`, a file name, or a variable name.
    pub detected_from: String,
    /// One entry per file created or changed; empty when already set up.
    pub changes: Vec<FileChange>,
    /// What to set in the platform's settings: names and scopes, never values.
    pub settings: Vec<Setting>,
    /// Steps left to the user (install a package, connect a store…).
    pub next_steps: Vec<String>,
}

/// One file `init` creates or changes.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Relative to the site's directory, e.g. `netlify.toml`.
    pub file: String,
    /// `"create"` or `"update"`.
    pub action: String,
    /// What is added, e.g. `[[plugins]] package = "netlify-plugin-tokenrelay"`.
    pub summary: String,
}

/// One variable to set in the platform's settings.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name.
    pub name: String,
    /// Netlify scopes (`Builds`, `Functions`) or Vercel environments
    /// (`Production`, `Preview`, `Development`).
    pub scopes: Vec<String>,
    /// What it is for, and who sets it when not the user.
    pub purpose: String,
}

/// Runs `init` with the JS options.
pub fn init(options: InitOptions) -> Result<InitReport, AddonError> {
    let options = tokenrelay_site::InitOptions {
        cwd: options.cwd.map(PathBuf::from),
        platform: options.platform.as_deref().map(str::parse::<Platform>).transpose()?,
        framework: options.framework.as_deref().map(str::parse::<Framework>).transpose()?,
        write: options.write.unwrap_or(false),
    };
    let report = tokenrelay_site::init(&options)?;
    Ok(InitReport {
        platform: report.platform.as_str().to_owned(),
        detected_from: report.detected_from,
        changes: report
            .changes
            .into_iter()
            .map(|c| FileChange { file: c.file.to_owned(), action: c.action.as_str().to_owned(), summary: c.summary })
            .collect(),
        settings: report
            .settings
            .into_iter()
            .map(|s| Setting {
                name: s.name,
                scopes: s.scopes.iter().map(|&scope| scope.to_owned()).collect(),
                purpose: s.purpose.to_owned(),
            })
            .collect(),
        next_steps: report.next_steps,
    })
}

//! `tokenrelay init`: adds tokenrelay to the site in a directory, for Netlify
//! or Vercel. Every file is planned in memory first ([`Plan`]), so a run that
//! cannot merge one file writes none, and a second run finds nothing to do
//! and changes no byte.
//!
//! Existing `netlify.toml`, `Cargo.toml` and `vercel.json` are edited through
//! `toml_edit` and `jsonc-parser`'s CST, which keep every comment, space and
//! order the user wrote; only the entries tokenrelay needs are added. A file
//! that already says something else about them (an `/api/relay/*` rule, a
//! `relay` binary with another path…) is refused, naming file and conflict.

mod netlify;
mod starter;
mod vercel;

use std::path::{Path, PathBuf};

use napi_derive::napi;

use crate::error::{AddonError, codes};

/// Options of `init`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct InitOptions {
    /// The site's directory (default: the current directory).
    pub cwd: Option<String>,
    /// `"netlify"` or `"vercel"`; detected from the site when not given.
    pub platform: Option<String>,
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

/// The two platforms `init` sets a site up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platform {
    Netlify,
    Vercel,
}

impl Platform {
    fn name(self) -> &'static str {
        match self {
            Platform::Netlify => "netlify",
            Platform::Vercel => "vercel",
        }
    }
}

/// A file's planned content.
struct Edit {
    file: &'static str,
    before: Option<String>,
    after: String,
    summary: String,
}

/// Every edit of one run, made in memory.
#[derive(Default)]
pub(crate) struct Plan {
    dir: PathBuf,
    edits: Vec<Edit>,
}

impl Plan {
    /// The current text of `file`, or `None` when it does not exist.
    pub(crate) fn read(&self, file: &str) -> Result<Option<String>, AddonError> {
        match std::fs::read_to_string(self.dir.join(file)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(file, format!("cannot be read: {e}"))),
        }
    }

    /// Plans `file` to hold `after`; nothing when it already does.
    pub(crate) fn set(&mut self, file: &'static str, before: Option<String>, after: String, summary: String) {
        if before.as_deref() != Some(after.as_str()) {
            self.edits.push(Edit { file, before, after, summary });
        }
    }

    fn changes(&self) -> Vec<FileChange> {
        let action = |e: &Edit| if e.before.is_some() { "update" } else { "create" };
        self.edits
            .iter()
            .map(|e| FileChange { file: e.file.to_owned(), action: action(e).to_owned(), summary: e.summary.clone() })
            .collect()
    }

    fn write(&self) -> Result<(), AddonError> {
        for edit in &self.edits {
            let path = self.dir.join(edit.file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| failed(edit.file, format!("cannot be created: {e}")))?;
            }
            std::fs::write(&path, &edit.after).map_err(|e| failed(edit.file, format!("cannot be written: {e}")))?;
        }
        Ok(())
    }
}

/// Those of `packages` the site's `package.json` does not depend on.
pub(crate) fn missing_packages<'a>(plan: &Plan, packages: &[&'a str]) -> Result<Vec<&'a str>, AddonError> {
    const FILE: &str = "package.json";
    let manifest = match plan.read(FILE)? {
        None => None,
        Some(text) => jsonc_parser::cst::CstRootNode::parse(&text, &jsonc_parser::ParseOptions::default())
            .map_err(|e| failed(FILE, format!("is not valid JSON: {e}")))?
            .object_value(),
    };
    let declared = |package: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|field| manifest.as_ref().and_then(|m| m.object_value(field)?.get(package)).is_some())
    };
    Ok(packages.iter().copied().filter(|p| !declared(p)).collect())
}

/// A file of the site that cannot be merged: `file: problem`.
pub(crate) fn conflict(file: &str, problem: impl std::fmt::Display) -> AddonError {
    AddonError::new(codes::INIT_CONFLICT, format!("{file}: {problem}; nothing was changed"))
}

/// A file of the site that cannot be read, parsed or written.
pub(crate) fn failed(file: &str, problem: impl std::fmt::Display) -> AddonError {
    AddonError::new(codes::INIT_FAILED, format!("{file}: {problem}"))
}

/// Plans (and with `write`, makes) the changes that add tokenrelay to the site.
pub fn init(options: InitOptions) -> Result<InitReport, AddonError> {
    let here = std::env::current_dir()
        .map_err(|e| AddonError::invalid_option("cwd", format!("the current directory is unusable: {e}")))?;
    let dir = options.cwd.as_deref().map_or_else(|| here.clone(), |c| here.join(c));
    if !dir.is_dir() {
        return Err(AddonError::invalid_option("cwd", format!("{} is not a directory", dir.display())));
    }
    let (platform, detected_from) = match options.platform.as_deref() {
        Some("netlify") => (Platform::Netlify, "--platform".to_owned()),
        Some("vercel") => (Platform::Vercel, "--platform".to_owned()),
        Some(other) => {
            return Err(AddonError::invalid_option("platform", format!("{other:?} is not \"netlify\" or \"vercel\"")));
        }
        None => detect(&dir, |name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))?,
    };

    let mut plan = Plan { dir, edits: Vec::new() };
    let config_vars = starter::plan_config(&mut plan)?;
    let settings = settings(platform, &config_vars);
    let names: Vec<&str> = settings.iter().map(|s| s.name.as_str()).collect();
    starter::plan_env_example(&mut plan, &names)?;
    starter::plan_gitignore(&mut plan, platform)?;
    let next_steps = match platform {
        Platform::Netlify => netlify::plan(&mut plan)?,
        Platform::Vercel => vercel::plan(&mut plan)?,
    };
    if options.write.unwrap_or(false) {
        plan.write()?;
    }
    Ok(InitReport {
        platform: platform.name().to_owned(),
        detected_from,
        changes: plan.changes(),
        settings,
        next_steps,
    })
}

/// The platform a site is for, from its files, else from the platform's
/// own environment (`NETLIFY=true` in Netlify builds, `VERCEL=1` in Vercel's).
fn detect(dir: &Path, is_set: impl Fn(&str) -> bool) -> Result<(Platform, String), AddonError> {
    let netlify = ["netlify.toml", ".netlify/state.json"].into_iter().find(|f| dir.join(f).is_file());
    let vercel = ["vercel.json", ".vercel/project.json"].into_iter().find(|f| dir.join(f).is_file());
    match (netlify, vercel) {
        (Some(n), None) => Ok((Platform::Netlify, n.to_owned())),
        (None, Some(v)) => Ok((Platform::Vercel, v.to_owned())),
        (Some(n), Some(v)) => Err(AddonError::new(
            codes::INIT_PLATFORM_UNKNOWN,
            format!("the site has both {n} and {v}: choose with --platform netlify or --platform vercel"),
        )),
        (None, None) if is_set("NETLIFY") => Ok((Platform::Netlify, "NETLIFY".to_owned())),
        (None, None) if is_set("VERCEL") => Ok((Platform::Vercel, "VERCEL".to_owned())),
        (None, None) => Err(AddonError::new(
            codes::INIT_PLATFORM_UNKNOWN,
            "no netlify.toml or vercel.json here and not inside a platform build: \
             choose with --platform netlify or --platform vercel",
        )),
    }
}

/// Every variable the site needs, with where to set it. Netlify: both the
/// Builds scope (the build plugin prefetches tokens) and the Functions scope
/// (the relay), https://docs.netlify.com/build/environment-variables/overview/#scopes.
/// Vercel: all three environments; the Upstash integration from the Vercel
/// Marketplace sets the store's variables itself.
fn settings(platform: Platform, config_vars: &[String]) -> Vec<Setting> {
    let (url, token) = match platform {
        Platform::Netlify => tokenrelay::UPSTASH_VARS,
        Platform::Vercel => tokenrelay::VERCEL_KV_VARS,
    };
    let store_purpose = match platform {
        Platform::Netlify => "the shared token store: your Upstash Redis database's REST URL and token",
        Platform::Vercel => "the shared token store: set by Upstash for Redis (Vercel Marketplace) once connected",
    };
    let scopes: Vec<String> = match platform {
        Platform::Netlify => vec!["Builds".into(), "Functions".into()],
        Platform::Vercel => vec!["Production".into(), "Preview".into(), "Development".into()],
    };
    let mut out: Vec<Setting> = config_vars
        .iter()
        .map(|name| Setting {
            name: name.clone(),
            scopes: scopes.clone(),
            purpose: "referenced by tokenrelay.toml".into(),
        })
        .collect();
    out.push(Setting {
        name: tokenrelay::ENCRYPTION_KEY_VAR.into(),
        scopes: scopes.clone(),
        purpose: "seals tokens in the store: base64 of 32 random bytes (openssl rand -base64 32)".into(),
    });
    for name in [url, token] {
        out.push(Setting { name: name.into(), scopes: scopes.clone(), purpose: store_purpose.into() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_comes_from_the_sites_files_before_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| false;
        assert_eq!(detect(dir.path(), none).unwrap_err().code(), codes::INIT_PLATFORM_UNKNOWN);
        assert_eq!(detect(dir.path(), |n| n == "VERCEL").unwrap(), (Platform::Vercel, "VERCEL".into()));
        std::fs::write(dir.path().join("netlify.toml"), "").unwrap();
        assert_eq!(detect(dir.path(), |n| n == "VERCEL").unwrap(), (Platform::Netlify, "netlify.toml".into()));
        std::fs::write(dir.path().join("vercel.json"), "{}").unwrap();
        let both = detect(dir.path(), none).unwrap_err();
        assert!(both.message().contains("netlify.toml and vercel.json"), "{}", both.message());
    }
}

//! `tokenrelay init`: adds tokenrelay to the site in a directory, for Netlify
//! or Vercel. Every file is planned in memory first ([`Plan`]), so a run that
//! cannot merge one file writes none, and a second run finds nothing to do
//! and changes no byte; then written all at once or not at all
//! ([`Plan::write`]), never through a symbolic link.
//!
//! Existing `netlify.toml`, `Cargo.toml` and `vercel.json` are edited through
//! `toml_edit` and `jsonc-parser`'s CST, which keep every comment, space and
//! order the user wrote; only the entries tokenrelay needs are added. A file
//! that already says something else about them (an `/api/relay/*` rule, a
//! `relay` binary with another path…) is refused, naming file and conflict.

mod framework;
mod netlify;
mod starter;
mod vercel;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use framework::Framework;

use crate::Error;

/// What `init` is asked to do.
#[derive(Debug, Default, Clone)]
pub struct InitOptions {
    /// The site's directory, relative to the current directory (default: the current directory).
    pub cwd: Option<PathBuf>,
    /// The platform; detected from the site when not given.
    pub platform: Option<Platform>,
    /// The site's framework, which serves the relay through `tokenrelay/fetch`
    /// instead of the platform's Rust function.
    pub framework: Option<Framework>,
    /// Whether to write the planned changes; otherwise nothing is written.
    pub write: bool,
}

/// What `init` did (or, without [`InitOptions::write`], would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    pub platform: Platform,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Relative to the site's directory, e.g. `netlify.toml`.
    pub file: &'static str,
    pub action: Action,
    /// What is added, e.g. `[[plugins]] package = "netlify-plugin-tokenrelay"`.
    pub summary: String,
}

/// Whether a [`FileChange`] creates its file or changes the one the site has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
}

impl Action {
    /// `"create"` or `"update"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
        }
    }
}

/// One variable to set in the platform's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name.
    pub name: String,
    /// Netlify scopes (`Builds`, `Functions`) or Vercel environments
    /// (`Production`, `Preview`, `Development`).
    pub scopes: &'static [&'static str],
    /// What it is for, and who sets it when not the user.
    pub purpose: &'static str,
}

/// The two platforms `init` sets a site up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Netlify,
    Vercel,
}

impl Platform {
    /// `"netlify"` or `"vercel"`, as `--platform` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Netlify => "netlify",
            Platform::Vercel => "vercel",
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// `--platform`'s value; an error names the option `platform`.
    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "netlify" => Ok(Platform::Netlify),
            "vercel" => Ok(Platform::Vercel),
            other => Err(Error::invalid_option("platform", format!("{other:?} is not \"netlify\" or \"vercel\""))),
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
    /// An empty plan for the site in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, edits: Vec::new() }
    }

    /// The current text of `file`, or `None` when it does not exist.
    pub(crate) fn read(&self, file: &str) -> Result<Option<String>, Error> {
        match std::fs::read_to_string(self.dir.join(file)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(file, format!("cannot be read: {e}"))),
        }
    }

    /// Plans `file` to hold `after`; nothing when it already does. A file
    /// that is, or lies under, a symbolic link is refused.
    pub(crate) fn set(
        &mut self,
        file: &'static str,
        before: Option<String>,
        after: String,
        summary: String,
    ) -> Result<(), Error> {
        if before.as_deref() != Some(after.as_str()) {
            self.refuse_links(file)?;
            self.edits.push(Edit { file, before, after, summary });
        }
        Ok(())
    }

    /// Writing through a link would change a file outside the site (through
    /// a dangling one, create it), and replacing the link would break it.
    fn refuse_links(&self, file: &str) -> Result<(), Error> {
        let mut path = self.dir.clone();
        for part in Path::new(file).components() {
            path.push(part);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                let link = path.strip_prefix(&self.dir).unwrap_or(&path).display().to_string();
                let what = if link == file {
                    "is a symbolic link".to_owned()
                } else {
                    format!("is under {link}, a symbolic link")
                };
                return Err(failed(
                    file,
                    format!(
                        "{what}, and init writes no file through one: \
                         replace the link with the file itself, or make this change by hand"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn changes(&self) -> Vec<FileChange> {
        let action = |e: &Edit| if e.before.is_some() { Action::Update } else { Action::Create };
        self.edits.iter().map(|e| FileChange { file: e.file, action: action(e), summary: e.summary.clone() }).collect()
    }

    /// Writes every edit or none: each file's new text goes to a temporary
    /// file beside it, and only once all are written are they renamed over
    /// the originals (a rename within a directory replaces a file at once,
    /// POSIX rename(2)), so neither an error nor a crash leaves a file
    /// half-written. Should a rename fail, those already made are undone;
    /// on any failure, the directories created for new files (`api/`) are
    /// removed again.
    fn write(&self) -> Result<(), Error> {
        let new_dirs: Vec<PathBuf> = self
            .edits
            .iter()
            .filter_map(|e| self.dir.join(e.file).parent().map(Path::to_path_buf))
            .filter(|d| !d.exists())
            .collect();
        let written = self.stage_and_rename();
        if written.is_err() {
            for dir in &new_dirs {
                // Only when empty: one left holding a file is named in the error.
                let _ = std::fs::remove_dir(dir);
            }
        }
        written
    }

    fn stage_and_rename(&self) -> Result<(), Error> {
        let staged = self.edits.iter().map(|e| self.stage(e.file, &e.after)).collect::<Result<Vec<_>, _>>()?;
        for (done, (edit, temp)) in self.edits.iter().zip(staged).enumerate() {
            if let Err(e) = temp.persist(self.dir.join(edit.file)) {
                let undone = self.undo(&self.edits[..done]);
                return Err(failed(edit.file, format!("cannot be written: {}; {undone}", e.error)));
            }
        }
        Ok(())
    }

    /// A temporary file beside `file` holding `text`, with `file`'s
    /// permissions when it exists.
    fn stage(&self, file: &str, text: &str) -> Result<tempfile::NamedTempFile, Error> {
        let path = self.dir.join(file);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| failed(file, format!("cannot be created: {e}")))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX);
        if let Some(permissions) = std::fs::metadata(&path).ok().map(|m| m.permissions()).or_else(new_file_permissions)
        {
            builder.permissions(permissions);
        }
        let unwritable = |e: std::io::Error| failed(file, format!("cannot be written: {e}; nothing was changed"));
        let mut temp = builder.tempfile_in(parent).map_err(unwritable)?;
        temp.write_all(text.as_bytes()).and_then(|()| temp.as_file().sync_all()).map_err(unwritable)?;
        Ok(temp)
    }

    /// Puts back what `edits` changed (their files already renamed into
    /// place): an updated file's former text, no file for a created one.
    /// Says what the site is left with, for the error.
    fn undo(&self, edits: &[Edit]) -> String {
        let mut kept = Vec::new();
        for edit in edits.iter().rev() {
            let path = self.dir.join(edit.file);
            let undone = match &edit.before {
                Some(text) => self.stage(edit.file, text).is_ok_and(|t| t.persist(&path).is_ok()),
                None => std::fs::remove_file(&path).is_ok(),
            };
            if !undone {
                kept.push(edit.file);
            }
        }
        match (edits.is_empty(), kept.is_empty()) {
            (true, _) => "nothing was changed".to_owned(),
            (false, true) => {
                let files: Vec<&str> = edits.iter().map(|e| e.file).collect();
                format!("{} put back as they were, so nothing was changed", files.join(", "))
            }
            (false, false) => format!(
                "{} could not be put back and hold init's changes: check them before running init again",
                kept.join(", ")
            ),
        }
    }
}

/// Names init's temporary files, so a user who finds one after a crash knows whose it is.
const TEMP_PREFIX: &str = ".tokenrelay-init-";

/// A new file's permissions: readable by all, writable by its owner, as an
/// editor creates one under the usual umask (022); `tempfile` would make it
/// private to its owner.
fn new_file_permissions() -> Option<std::fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(std::fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Those of `packages` the site's `package.json` does not depend on.
pub(crate) fn missing_packages<'a>(plan: &Plan, packages: &[&'a str]) -> Result<Vec<&'a str>, Error> {
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
pub(crate) fn conflict(file: &str, problem: impl std::fmt::Display) -> Error {
    Error::InitConflict { file: file.to_owned(), problem: problem.to_string() }
}

/// A file of the site that cannot be read, parsed or written.
pub(crate) fn failed(file: &str, problem: impl std::fmt::Display) -> Error {
    Error::InitFailed { file: file.to_owned(), problem: problem.to_string() }
}

/// Plans (and with `write`, makes) the changes that add tokenrelay to the site.
pub fn init(options: &InitOptions) -> Result<InitReport, Error> {
    let here = std::env::current_dir()
        .map_err(|e| Error::invalid_option("cwd", format!("the current directory is unusable: {e}")))?;
    let dir = options.cwd.as_deref().map_or_else(|| here.clone(), |c| here.join(c));
    if !dir.is_dir() {
        return Err(Error::invalid_option("cwd", format!("{} is not a directory", dir.display())));
    }
    let (platform, detected_from) = match options.platform {
        Some(platform) => (platform, "--platform".to_owned()),
        None => detect(&dir, |name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))?,
    };
    let framework = options.framework;
    if framework == Some(Framework::NetlifyFunctions) && platform != Platform::Netlify {
        return Err(Error::invalid_option(
            "framework",
            "netlify-functions runs on Netlify only: use --platform netlify",
        ));
    }

    let mut plan = Plan::new(dir);
    let config_vars = starter::plan_config(&mut plan)?;
    let settings = settings(platform, &config_vars);
    let names: Vec<&str> = settings.iter().map(|s| s.name.as_str()).collect();
    starter::plan_env_example(&mut plan, &names)?;
    starter::plan_gitignore(&mut plan, platform)?;
    if platform == Platform::Vercel {
        starter::plan_vercelignore(&mut plan)?;
    }
    let mut next_steps = match (platform, framework) {
        (Platform::Netlify, framework) => netlify::plan(
            &mut plan,
            match framework {
                None => netlify::Relay::Prebuilt,
                Some(Framework::NetlifyFunctions) => netlify::Relay::Function,
                Some(_) => netlify::Relay::Framework,
            },
        )?,
        (Platform::Vercel, None) => vercel::plan(&mut plan)?,
        // The framework's own build routes the relay on Vercel.
        (Platform::Vercel, Some(_)) => Vec::new(),
    };
    if let Some(framework) = framework {
        next_steps.extend(framework::plan(&mut plan, framework)?);
    }
    if options.write {
        plan.write()?;
    }
    Ok(InitReport { platform, detected_from, changes: plan.changes(), settings, next_steps })
}

/// The platform a site is for, from its files, else from the platform's
/// own environment (`NETLIFY=true` in Netlify builds, `VERCEL=1` in Vercel's).
fn detect(dir: &Path, is_set: impl Fn(&str) -> bool) -> Result<(Platform, String), Error> {
    let netlify = ["netlify.toml", ".netlify/state.json"].into_iter().find(|f| dir.join(f).is_file());
    let vercel = ["vercel.json", ".vercel/project.json"].into_iter().find(|f| dir.join(f).is_file());
    match (netlify, vercel) {
        (Some(n), None) => Ok((Platform::Netlify, n.to_owned())),
        (None, Some(v)) => Ok((Platform::Vercel, v.to_owned())),
        (Some(netlify), Some(vercel)) => Err(Error::InitBothPlatforms { netlify, vercel }),
        (None, None) if is_set("NETLIFY") => Ok((Platform::Netlify, "NETLIFY".to_owned())),
        (None, None) if is_set("VERCEL") => Ok((Platform::Vercel, "VERCEL".to_owned())),
        (None, None) => Err(Error::InitNoPlatform),
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
    let scopes: &[&str] = match platform {
        Platform::Netlify => &["Builds", "Functions"],
        Platform::Vercel => &["Production", "Preview", "Development"],
    };
    let mut out: Vec<Setting> = config_vars
        .iter()
        .map(|name| Setting { name: name.clone(), scopes, purpose: "referenced by tokenrelay.toml" })
        .collect();
    out.push(Setting {
        name: tokenrelay::ENCRYPTION_KEY_VAR.into(),
        scopes,
        purpose: "seals tokens in the store: base64 of 32 random bytes (openssl rand -base64 32)",
    });
    for name in [url, token] {
        out.push(Setting { name: name.into(), scopes, purpose: store_purpose });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rename_puts_back_every_file_already_renamed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("updated.toml"), "old").unwrap();
        // A rename cannot replace a directory holding files: the third edit fails.
        std::fs::create_dir_all(dir.path().join("blocked/inside")).unwrap();
        let mut plan = Plan::new(dir.path().to_owned());
        plan.set("new-dir/created.txt", None, "new".into(), String::new()).unwrap();
        plan.set("updated.toml", Some("old".into()), "new".into(), String::new()).unwrap();
        plan.set("blocked", None, "new".into(), String::new()).unwrap();

        let err = plan.write().unwrap_err();
        assert_eq!(err.code(), "init_failed");
        assert!(err.to_string().starts_with("blocked: cannot be written: "), "{err}");
        assert!(
            err.to_string()
                .ends_with("new-dir/created.txt, updated.toml put back as they were, so nothing was changed"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("updated.toml")).unwrap(), "old");
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, ["blocked", "updated.toml"], "no created file or directory, no temporary file left");
    }

    #[cfg(unix)]
    #[test]
    fn a_rewritten_file_keeps_its_permissions_and_a_new_one_is_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("netlify.toml");
        std::fs::write(&existing, "old").unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut plan = Plan::new(dir.path().to_owned());
        plan.set("netlify.toml", Some("old".into()), "new".into(), String::new()).unwrap();
        plan.set("api/relay.rs", None, "fn main() {}".into(), String::new()).unwrap();
        plan.write().unwrap();
        let mode = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("netlify.toml"), mode("api/relay.rs")), (0o640, 0o644));
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "new");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_under_a_linked_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("api")).unwrap();
        let err = Plan::new(dir.path().to_owned()).set("api/relay.rs", None, "x".into(), String::new()).unwrap_err();
        assert_eq!(err.code(), "init_failed");
        assert!(
            err.to_string()
                .starts_with("api/relay.rs: is under api, a symbolic link, and init writes no file through one"),
            "{err}"
        );
    }

    #[test]
    fn platform_comes_from_the_sites_files_before_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| false;
        assert_eq!(detect(dir.path(), none).unwrap_err().code(), "init_platform_unknown");
        assert_eq!(detect(dir.path(), |n| n == "VERCEL").unwrap(), (Platform::Vercel, "VERCEL".into()));
        std::fs::write(dir.path().join("netlify.toml"), "").unwrap();
        assert_eq!(detect(dir.path(), |n| n == "VERCEL").unwrap(), (Platform::Netlify, "netlify.toml".into()));
        std::fs::write(dir.path().join("vercel.json"), "{}").unwrap();
        let both = detect(dir.path(), none).unwrap_err();
        assert!(both.to_string().contains("netlify.toml and vercel.json"), "{}", both.to_string());
    }
}

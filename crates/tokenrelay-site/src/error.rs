//! The crate's one error type: each variant has a stable code ([`SiteCode`],
//! or the core's for a config problem) and a message that names the option,
//! file or directory and says what to do. Messages are built from names and
//! paths only, never from a value the site's environment holds.

use std::path::PathBuf;

tokenrelay::stable_codes! {
    /// Codes this crate adds to the core's [`tokenrelay::ErrorCode`]s.
    pub enum SiteCode {
        /// An option passed by the caller is unusable (names the option).
        InvalidOptions = "invalid_options",
        /// The leak scan could not read the directory or a file in it.
        ScanFailed = "scan_failed",
        /// The leak scan would read more than its byte limit (names the file reached).
        ScanTooLarge = "scan_too_large",
        /// `init`: a file of the site says something else about what tokenrelay
        /// needs; the message names the file and the conflict.
        InitConflict = "init_conflict",
        /// `init`: the platform was neither given nor recognisable from the site.
        InitPlatformUnknown = "init_platform_unknown",
        /// `init`: a file of the site could not be read, parsed or written.
        InitFailed = "init_failed",
    }
}

/// What went wrong, with a stable [`Error::code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An unusable option: `option` is its name as the caller wrote it (`cwd`, `platform`…).
    #[error("option {option}: {problem}")]
    InvalidOption { option: String, problem: String },
    /// `init`: a file of the site cannot be merged.
    #[error("{file}: {problem}; nothing was changed")]
    InitConflict { file: String, problem: String },
    /// `init`: the site has files of both platforms.
    #[error("the site has both {netlify} and {vercel}: choose with --platform netlify or --platform vercel")]
    InitBothPlatforms { netlify: &'static str, vercel: &'static str },
    /// `init`: no platform given, none recognisable from the site or the environment.
    #[error(
        "no netlify.toml or vercel.json here and not inside a platform build: \
         choose with --platform netlify or --platform vercel"
    )]
    InitNoPlatform,
    /// `init`: a file of the site cannot be read, parsed or written.
    #[error("{file}: {problem}")]
    InitFailed { file: String, problem: String },
    /// The scanned directory is missing or not a directory.
    #[error("{} is not a directory: check the publish directory", dir.display())]
    ScanNotADirectory { dir: PathBuf },
    /// A file or directory under the scanned one cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ScanUnreadable { path: PathBuf, source: std::io::Error },
    /// The secrets' patterns could not be compiled into one search.
    #[error("cannot build the search: {0}")]
    ScanSearch(#[from] aho_corasick::BuildError),
    /// The scan reached its byte limit at `reached_at`.
    #[error(
        "{} holds more than {max_bytes} bytes to search (decompressed .gz/.br content counted), \
         reached at {reached_at}: keep large files out of the published output, or raise the scan's maxBytes",
        dir.display()
    )]
    ScanTooLarge { dir: PathBuf, max_bytes: u64, reached_at: String },
    /// The site's config is unreadable or invalid (the core's error and code).
    #[error(transparent)]
    Config(#[from] tokenrelay::Error),
}

impl Error {
    /// The stable code, e.g. `init_conflict`, or the core's for [`Error::Config`].
    pub fn code(&self) -> &'static str {
        let code = match self {
            Error::InvalidOption { .. } => SiteCode::InvalidOptions,
            Error::InitConflict { .. } => SiteCode::InitConflict,
            Error::InitBothPlatforms { .. } | Error::InitNoPlatform => SiteCode::InitPlatformUnknown,
            Error::InitFailed { .. } => SiteCode::InitFailed,
            Error::ScanNotADirectory { .. } | Error::ScanUnreadable { .. } | Error::ScanSearch(_) => {
                SiteCode::ScanFailed
            }
            Error::ScanTooLarge { .. } => SiteCode::ScanTooLarge,
            Error::Config(e) => return e.code(),
        };
        code.as_str()
    }

    /// An unusable option named `option`.
    pub fn invalid_option(option: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Error::InvalidOption { option: option.into(), problem: problem.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_its_code_and_names_what_to_fix() {
        let option = Error::invalid_option("cwd", "/nope is not a directory");
        assert_eq!(
            (option.code(), option.to_string().as_str()),
            ("invalid_options", "option cwd: /nope is not a directory")
        );
        let config = Error::from(tokenrelay::Error::UnknownUpstream("maps".into()));
        assert_eq!((config.code(), config.to_string().as_str()), ("unknown_upstream", "unknown upstream \"maps\""));
        assert_eq!(Error::InitNoPlatform.code(), "init_platform_unknown");
    }
}

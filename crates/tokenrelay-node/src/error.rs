//! The addon's one error type: the core's errors with their stable codes,
//! plus the few the addon adds itself.
//!
//! napi-rs rejects a Promise with an `Error` whose `code` is a napi status
//! (`GenericFailure`), and its async functions cannot carry a custom status.
//! So the message crosses the boundary as `[code] message`, and the
//! package's `index.js` turns that back into a `TokenrelayError` with `code`.
//! The prefix format is fixed by [`AddonError::into_napi`] and parsed in
//! exactly one place on the JS side.

/// Codes the addon adds to [`tokenrelay::Error::code`]'s.
pub mod codes {
    /// An option passed by the caller is unusable (names the option).
    pub const INVALID_OPTIONS: &str = "invalid_options";
    /// The leak scan could not read the directory or a file in it.
    pub const SCAN_FAILED: &str = "scan_failed";
    /// The leak scan would read more than its byte limit (names the file reached).
    pub const SCAN_TOO_LARGE: &str = "scan_too_large";
    /// An upstream named by the caller is not configured.
    pub const UNKNOWN_UPSTREAM: &str = "unknown_upstream";
    /// `init`: a file of the site says something else about what tokenrelay
    /// needs; the message names the file and the conflict.
    pub const INIT_CONFLICT: &str = "init_conflict";
    /// `init`: the platform was neither given nor recognisable from the site.
    pub const INIT_PLATFORM_UNKNOWN: &str = "init_platform_unknown";
    /// `init`: a file of the site could not be read, parsed or written.
    pub const INIT_FAILED: &str = "init_failed";
}

/// An error with a stable machine `code` and a message that says what to fix.
/// Never holds a secret: messages are built from names, paths and the core's
/// already-redacted errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonError {
    code: &'static str,
    message: String,
}

impl AddonError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// An unusable option: `option` is its name as the caller wrote it.
    pub(crate) fn invalid_option(option: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(codes::INVALID_OPTIONS, format!("option {option}: {problem}"))
    }

    /// The stable code, e.g. `token_rejected`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human message, without the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JS-bound form: `[code] message` (see the module docs).
    pub fn into_napi(self) -> napi::Error {
        napi::Error::new(napi::Status::GenericFailure, format!("[{}] {}", self.code, self.message))
    }
}

impl From<tokenrelay::Error> for AddonError {
    fn from(e: tokenrelay::Error) -> Self {
        Self { code: e.code(), message: e.to_string() }
    }
}

impl std::fmt::Display for AddonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for AddonError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_keep_their_code_and_message() {
        let e = AddonError::from(tokenrelay::Error::UnknownUpstream("maps".into()));
        assert_eq!((e.code(), e.message()), ("unknown_upstream", "unknown upstream \"maps\""));
        assert_eq!(e.into_napi().reason, "[unknown_upstream] unknown upstream \"maps\"");
    }

    #[test]
    fn option_errors_name_the_option() {
        let e = AddonError::invalid_option("buildMargin", "\"soon\" is not a duration");
        assert_eq!(e.to_string(), "[invalid_options] option buildMargin: \"soon\" is not a duration");
    }
}

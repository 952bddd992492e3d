//! The addon's one error type: the core's and `tokenrelay-site`'s errors
//! with their stable codes, plus the one the addon adds itself.
//!
//! napi-rs rejects a Promise with an `Error` whose `code` is a napi status
//! (`GenericFailure`), and its async functions cannot carry a custom status.
//! So the message crosses the boundary as `[code] message`, and the
//! package's `index.js` turns that back into a `TokenrelayError` with `code`.
//! The prefix format is fixed by [`AddonError::into_napi`] and parsed in
//! exactly one place on the JS side.

use napi_derive::napi;

use tokenrelay_site::SiteCode;

tokenrelay::stable_codes! {
    /// Codes the addon adds to the core's [`tokenrelay::ErrorCode`]s and [`SiteCode`]s.
    pub enum AddonCode {
        /// The Netlify plugin could not write the prebuilt relay function (names the file and cause).
        FunctionNotPlaced = "function_not_placed",
    }
}

/// Every stable code, as declared in Rust: for the package's `ERROR_CODES`
/// and the checks that the types and docs list the same.
#[napi(object)]
pub struct ErrorCodes {
    /// What a `TokenrelayError` from the addon can carry: the core's and the addon's.
    pub addon: Vec<String>,
    /// What the relay answers with besides the core's token and config codes.
    pub relay: Vec<String>,
}

/// The codes ([`ErrorCodes`]).
#[napi]
pub fn error_codes() -> ErrorCodes {
    let core = tokenrelay::ErrorCode::ALL.iter().map(|c| c.as_str());
    let site = SiteCode::ALL.iter().map(|c| c.as_str());
    let addon = core.chain(site).chain(AddonCode::ALL.iter().map(|c| c.as_str())).map(str::to_owned).collect();
    let relay = tokenrelay::relay::RelayCode::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    ErrorCodes { addon, relay }
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
        tokenrelay_site::Error::invalid_option(option, problem).into()
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

impl From<tokenrelay_site::Error> for AddonError {
    fn from(e: tokenrelay_site::Error) -> Self {
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

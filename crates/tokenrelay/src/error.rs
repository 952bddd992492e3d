//! One error type for the whole crate: every variant carries a stable machine
//! code ([`Error::code`]) and a human message that names the field or cause.
//! No variant ever holds a secret value: messages are built from names,
//! statuses and upstream-provided error codes only.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each with a stable [`code`](Error::code).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    #[error("{}: cannot read the config file: {source}", file.display())]
    ConfigUnreadable {
        /// The file that was tried.
        file: PathBuf,
        /// The I/O cause.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The config file is not valid; every problem found is listed.
    #[error("{}: {}", file.display(), problems.join("; "))]
    ConfigInvalid {
        /// The file that was parsed.
        file: PathBuf,
        /// One entry per problem, each naming the upstream and field.
        problems: Vec<String>,
    },

    /// Environment variables referenced by the config (or required by the
    /// store) are not set; all of them are listed at once.
    #[error("{}: missing environment variables: {}", file.display(), missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    MissingEnv {
        /// The config file that references them.
        file: PathBuf,
        /// Every missing variable with where it is used.
        missing: Vec<MissingVar>,
    },

    /// An environment variable is set but its value is unusable.
    #[error("environment variable {name}: {reason}")]
    InvalidEnv {
        /// The variable's name (never its value).
        name: String,
        /// Why the value was refused.
        reason: String,
    },

    /// No upstream of that name is configured.
    #[error("unknown upstream \"{0}\"")]
    UnknownUpstream(String),

    /// The token endpoint refused the credentials or the request
    /// (RFC 6749 §5.2 error response, or HTTP 401/403). Retrying will not help.
    #[error("upstream \"{upstream}\": token endpoint rejected the request: {reason}")]
    TokenRejected {
        /// The upstream whose token was requested.
        upstream: String,
        /// The OAuth `error` code and description, or the HTTP status.
        reason: String,
    },

    /// The token endpoint answered, but not with a usable token.
    #[error("upstream \"{upstream}\": invalid token response: {reason}")]
    TokenResponseInvalid {
        /// The upstream whose token was requested.
        upstream: String,
        /// What was wrong with the response.
        reason: String,
    },

    /// No token could be obtained (endpoint down, timing out, or still
    /// cooling down after such a failure).
    #[error("upstream \"{upstream}\": token unavailable: {reason}")]
    TokenUnavailable {
        /// The upstream whose token was requested.
        upstream: String,
        /// The last cause seen.
        reason: String,
    },

    /// A cache purge could not be recorded (no cached route, store unreachable or busy).
    #[error("upstream \"{upstream}\": cache purge failed: {reason}")]
    CachePurgeFailed {
        /// The upstream being purged.
        upstream: String,
        /// What went wrong and what to do.
        reason: String,
    },

    /// The shared store could not be read (`tokenrelay status`).
    #[error("the store could not be read: {reason}")]
    StoreUnreadable {
        /// What went wrong, without a secret.
        reason: String,
    },

    /// An alert could not be sent (`tokenrelay alert test`, a leak found by
    /// the build): no `[alerts]` webhook, or the webhook refused it.
    #[error("alert not sent: {reason}")]
    AlertFailed {
        /// What went wrong, without the webhook's URL.
        reason: String,
    },
}

/// An environment variable the config needs but that is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVar {
    /// The variable name.
    pub name: String,
    /// Where it is referenced, e.g. `upstream "getty": token.client_secret`.
    pub used_by: String,
}

impl std::fmt::Display for MissingVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.used_by)
    }
}

impl Error {
    /// A stable, machine-readable code for this error, suitable for JSON
    /// bodies, JS `Error.code` and documentation.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The code, as its [`ErrorCode`].
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::ConfigUnreadable { .. } => ErrorCode::ConfigUnreadable,
            Error::ConfigInvalid { .. } => ErrorCode::ConfigInvalid,
            Error::MissingEnv { .. } => ErrorCode::MissingEnv,
            Error::InvalidEnv { .. } => ErrorCode::InvalidEnv,
            Error::UnknownUpstream(_) => ErrorCode::UnknownUpstream,
            Error::TokenRejected { .. } => ErrorCode::TokenRejected,
            Error::TokenResponseInvalid { .. } => ErrorCode::TokenResponseInvalid,
            Error::TokenUnavailable { .. } => ErrorCode::TokenUnavailable,
            Error::CachePurgeFailed { .. } => ErrorCode::CachePurgeFailed,
            Error::StoreUnreadable { .. } => ErrorCode::StoreUnreadable,
            Error::AlertFailed { .. } => ErrorCode::AlertFailed,
        }
    }
}

crate::stable_codes! {
    /// Every code an [`Error`] carries.
    pub enum ErrorCode {
        /// The config file could not be read.
        ConfigUnreadable = "config_unreadable",
        /// The config file is invalid; every problem is listed.
        ConfigInvalid = "config_invalid",
        /// Environment variables the config or store needs are not set.
        MissingEnv = "missing_env",
        /// An environment variable is set but unusable.
        InvalidEnv = "invalid_env",
        /// No upstream of that name is configured.
        UnknownUpstream = "unknown_upstream",
        /// The token endpoint refused the credentials or the request.
        TokenRejected = "token_rejected",
        /// The token endpoint answered, but not with a usable token.
        TokenResponseInvalid = "token_response_invalid",
        /// No token could be obtained.
        TokenUnavailable = "token_unavailable",
        /// A cache purge could not be recorded.
        CachePurgeFailed = "cache_purge_failed",
        /// The shared store could not be read.
        StoreUnreadable = "store_unreadable",
        /// An alert could not be sent.
        AlertFailed = "alert_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_env_lists_every_variable_with_its_use() {
        let err = Error::MissingEnv {
            file: "tokenrelay.toml".into(),
            missing: vec![
                MissingVar { name: "A".into(), used_by: "upstream \"x\": token.client_id".into() },
                MissingVar { name: "B".into(), used_by: "upstream \"x\": token.client_secret".into() },
            ],
        };
        assert_eq!(err.code(), "missing_env");
        assert_eq!(
            err.to_string(),
            "tokenrelay.toml: missing environment variables: A (upstream \"x\": token.client_id), \
             B (upstream \"x\": token.client_secret)"
        );
    }
}

//! Token sources: how an upstream's access token is obtained.
//!
//! Each upstream has exactly one [`Source`]. A source performs a single
//! exchange ([`Source::fetch_once`]) with one of its secrets; [`retry`] adds
//! bounded, jittered retries for transient failures, and [`fallback`] tries
//! the previous secret when the endpoint refuses the current one.

pub(crate) mod fallback;
pub(crate) mod json;
pub(crate) mod oauth2;
mod response;
pub(crate) mod retry;

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;
use crate::param::Param;

/// An access token and, when the endpoint says so, the moment it expires.
///
/// `Debug` never shows the value; read it with [`Token::expose`] where it
/// goes on the wire.
#[derive(Clone)]
pub struct Token {
    value: SecretString,
    expires_at: Option<SystemTime>,
    outcome: Provenance,
    minted_with: MintedWith,
}

/// Which of the upstream's secrets the token endpoint accepted for a token
/// (`previous_client_secret`, `previous_secret`: see the README's rotation
/// procedure). A source without a previous secret only ever mints with its
/// current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintedWith {
    /// The current secret (`client_secret`, or the field `previous_secret` replaces).
    Current,
    /// The previous secret. On a token this instance fetched (its outcome
    /// `fetched` or `direct`), the endpoint refused the current one: until
    /// the current secret is fixed, the previous one must not be revoked.
    /// On one read from the store it may also predate the deploy that made
    /// its secret the previous one (`tokenrelay status` tells the two apart).
    Previous,
    /// Neither configured secret: a token another deployment stored with a
    /// secret this config no longer names, or one stored before tokenrelay
    /// recorded which secret minted it.
    Other,
}

impl MintedWith {
    /// A short stable name: `current`, `previous` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            MintedWith::Current => "current",
            MintedWith::Previous => "previous",
            MintedWith::Other => "other",
        }
    }
}

/// Where the broker found a token on this call, for logs and `Server-Timing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// The instance's in-process cache: no network at all.
    Memory,
    /// The shared store (another instance fetched it).
    Store,
    /// The token endpoint, by this instance, on behalf of all.
    Fetched,
    /// The token endpoint directly, because the shared store failed.
    Direct,
    /// A static key: nothing to fetch.
    Static,
}

impl Provenance {
    /// A short stable name: `memory`, `store`, `fetched`, `direct` or `static`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Memory => "memory",
            Provenance::Store => "store",
            Provenance::Fetched => "fetched",
            Provenance::Direct => "direct",
            Provenance::Static => "static",
        }
    }
}

impl Token {
    pub(crate) fn new(value: impl Into<String>, expires_at: Option<SystemTime>) -> Self {
        Self {
            value: SecretString::from(value.into()),
            expires_at,
            outcome: Provenance::Fetched,
            minted_with: MintedWith::Current,
        }
    }

    /// The same token, marked as minted with `secret`.
    pub(crate) fn minted(mut self, secret: MintedWith) -> Self {
        self.minted_with = secret;
        self
    }

    /// Which of the upstream's secrets minted this token. A token with
    /// outcome [`Provenance::Fetched`] or [`Provenance::Direct`] and
    /// [`MintedWith::Previous`] is the event "the previous secret is still in
    /// use": the endpoint refused the current one at this rotation (once per
    /// rotation across instances: only the fetcher sees it).
    pub fn minted_with(&self) -> MintedWith {
        self.minted_with
    }

    /// The same token, marked as found at `outcome`.
    pub(crate) fn from(mut self, outcome: Provenance) -> Self {
        self.outcome = outcome;
        self
    }

    /// Where the broker found this token on this call.
    pub fn outcome(&self) -> Provenance {
        self.outcome
    }

    /// The token itself. Only call this to put it on the wire.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// When the token expires (`None` for static keys, which never do).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    pub(crate) fn same_value(&self, other: &Token) -> bool {
        self.expose() == other.expose()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .field("outcome", &self.outcome)
            .field("minted_with", &self.minted_with)
            .finish()
    }
}

/// How an upstream's token is obtained.
#[derive(Debug)]
pub(crate) enum Source {
    /// RFC 6749 §4.4 client credentials grant.
    OAuth2(oauth2::ClientCredentials),
    /// Any custom JSON token endpoint.
    Json(json::JsonEndpoint),
    /// A plain API key, injected as is.
    Static(Param),
}

/// A configured value a token source sends to its endpoint, named by its
/// field in the config (e.g. `token.client_secret`). Each source lists its
/// own once ([`Source::credentials`]); summaries, secret variables and the
/// scrubbing of rejections all derive from that list.
pub(crate) type Credential<'a> = (String, &'a Param);

/// The secret values among `credentials` (those read from the environment).
pub(crate) fn secrets<'a>(credentials: &[Credential<'a>]) -> Vec<&'a str> {
    credentials.iter().filter_map(|(_, p)| p.secret()).collect()
}

/// Why a single exchange failed: worth retrying, worth trying with the
/// previous secret, or final.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Timeouts, connection errors, HTTP 5xx and 429.
    Transient(String),
    /// The endpoint says the credentials are bad (see
    /// [`response::rejection`]): the same request will not succeed again,
    /// but the previous secret may.
    Refused(Error),
    /// Other rejections and unusable responses: retrying will not help.
    Final(Error),
}

/// Which secret an exchange sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secret {
    Current,
    Previous,
}

impl Source {
    /// The config name of this source type.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Source::OAuth2(_) => "oauth2_client_credentials",
            Source::Json(_) => "json",
            Source::Static(_) => "static",
        }
    }

    /// Whether tokens from this source expire and must be cached and rotated.
    pub(crate) fn rotates(&self) -> bool {
        !matches!(self, Source::Static(_))
    }

    /// Whether a previous secret is configured beside the current one.
    pub(crate) fn has_previous(&self) -> bool {
        match self {
            Source::OAuth2(s) => s.previous_client_secret.is_some(),
            Source::Json(s) => s.previous.is_some(),
            Source::Static(_) => false,
        }
    }

    /// The value of the current or previous secret, for the keyed tag that
    /// records which one minted a stored token (never stored or shown
    /// itself). A `json` source without `previous_secret` names no single
    /// secret field: its current "secret" is then its whole identity.
    pub(crate) fn secret_value(&self, which: Secret) -> Option<String> {
        match (self, which) {
            (Source::OAuth2(s), Secret::Current) => Some(s.client_secret.expose().to_owned()),
            (Source::OAuth2(s), Secret::Previous) => s.previous_client_secret.as_ref().map(|p| p.expose().to_owned()),
            (Source::Json(s), _) => s.secret_value(which),
            (Source::Static(_), _) => None,
        }
    }

    /// Every credential this source sends, in config order.
    pub(crate) fn credentials(&self) -> Vec<Credential<'_>> {
        match self {
            Source::OAuth2(s) => s.credentials(),
            Source::Json(s) => s.credentials(),
            Source::Static(key) => vec![("token.key".to_owned(), key)],
        }
    }

    /// What identifies the credentials a token is minted for: token URL,
    /// client id, scope, audience and extra parameters (for `json` sources,
    /// the request with its resolved values; for a static key, the key). It
    /// may hold secrets: the store only ever keeps a keyed hash of it, so that
    /// a change of credentials
    /// (or another deployment's) never serves a token minted for others.
    pub(crate) fn identity(&self) -> String {
        match self {
            Source::OAuth2(s) => s.identity(),
            Source::Json(s) => s.identity(),
            Source::Static(key) => key.expose().to_owned(),
        }
    }

    /// The time limit of one exchange (`None` for static keys, which make none).
    pub(crate) fn timeout(&self) -> Option<Duration> {
        match self {
            Source::OAuth2(s) => Some(s.timeout),
            Source::Json(s) => Some(s.timeout),
            Source::Static(_) => None,
        }
    }

    /// Performs one exchange with the token endpoint, sending `secret`.
    pub(crate) async fn fetch_once(
        &self,
        http: &reqwest::Client,
        upstream: &str,
        secret: Secret,
    ) -> Result<Token, Failure> {
        match self {
            Source::OAuth2(s) => s.fetch_once(http, upstream, secret).await,
            Source::Json(s) => s.fetch_once(http, upstream, secret).await,
            Source::Static(key) => Ok(static_token(key)),
        }
    }
}

/// The token of a static key: the key itself, no exchange.
pub(crate) fn static_token(key: &Param) -> Token {
    Token::new(key.expose(), None).from(Provenance::Static)
}

/// Describes a transport error without its URL or any header.
pub(crate) fn describe_transport(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        format!(
            "request failed: {}",
            std::error::Error::source(err).map_or_else(|| "transport error".to_owned(), ToString::to_string)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("tok_secret_value", None);
        let shown = format!("{t:?}");
        assert!(!shown.contains("tok_secret_value"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }
}

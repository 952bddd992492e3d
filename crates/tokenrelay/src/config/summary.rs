//! A redacted summary of the effective configuration, for `check` and logs.

use serde::Serialize;

use super::Config;
use crate::token::Source;

/// What tokenrelay will do, with every secret replaced by its variable name.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The config file.
    pub file: String,
    /// Which shared store is used, e.g. `upstash https://…` or `local file …`.
    pub store: String,
    /// One entry per upstream.
    pub upstreams: Vec<UpstreamSummary>,
}

/// One upstream in a [`Summary`].
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamSummary {
    /// The upstream's name.
    pub name: String,
    /// Where requests are relayed.
    pub base_url: String,
    /// The token source type, as written in the config.
    pub token_source: &'static str,
    /// The token endpoint, when the source has one.
    pub token_url: Option<String>,
    /// Credential fields by config field (e.g. `token.client_secret`,
    /// `relay.headers.api-key`), each a literal or `$NAME (redacted)`; then
    /// the OAuth 2.0 `token.scope` and `token.audience`, if set.
    pub credentials: Vec<(String, String)>,
}

impl Config {
    /// Summarises this config; `store` describes the store in use.
    pub(crate) fn summary(&self, store: String) -> Summary {
        let upstreams = self
            .upstreams()
            .map(|u| {
                let mut credentials: Vec<(String, String)> =
                    u.credentials().into_iter().map(|(field, p)| (field, p.describe())).collect();
                let token_url = match &u.source {
                    Source::OAuth2(s) => {
                        credentials.extend(s.scope.iter().map(|v| ("token.scope".to_owned(), v.clone())));
                        credentials.extend(s.audience.iter().map(|v| ("token.audience".to_owned(), v.clone())));
                        Some(s.url.to_string())
                    }
                    Source::Json(s) => Some(s.url.to_string()),
                    Source::Static(_) => None,
                };
                UpstreamSummary {
                    name: u.name.clone(),
                    base_url: u.base_url.to_string(),
                    token_source: u.source.kind(),
                    token_url,
                    credentials,
                }
            })
            .collect();
        Summary { file: self.file.display().to_string(), store, upstreams }
    }
}

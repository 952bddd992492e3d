//! A redacted summary of the effective configuration, for `check` and logs.

use serde::Serialize;

use super::Config;
use crate::param::Param;
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
    /// Credential fields, each a literal or `$NAME (redacted)`.
    pub credentials: Vec<(String, String)>,
}

impl Config {
    /// Summarises this config; `store` describes the store in use.
    pub(crate) fn summary(&self, store: String) -> Summary {
        let upstreams = self
            .upstreams()
            .map(|u| {
                let (token_url, credentials) = describe(&u.source);
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

fn describe(source: &Source) -> (Option<String>, Vec<(String, String)>) {
    let field = |name: &str, p: &Param| (name.to_owned(), p.describe());
    match source {
        Source::OAuth2(s) => {
            let mut creds = vec![field("client_id", &s.client_id), field("client_secret", &s.client_secret)];
            creds.extend(s.scope.iter().map(|v| ("scope".to_owned(), v.clone())));
            creds.extend(s.audience.iter().map(|v| ("audience".to_owned(), v.clone())));
            creds.extend(s.extra.iter().map(|(k, v)| field(&format!("extra.{k}"), v)));
            (Some(s.url.to_string()), creds)
        }
        Source::Json(s) => {
            (Some(s.url.to_string()), s.headers.iter().map(|(k, v)| field(&format!("headers.{k}"), v)).collect())
        }
        Source::Static(key) => (None, vec![field("key", key)]),
    }
}

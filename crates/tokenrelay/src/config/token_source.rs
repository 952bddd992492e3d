//! Builds a [`Source`] from an upstream's `token` table: OAuth 2.0 client
//! credentials, a JSON endpoint (method, headers, body template, pointers to
//! the token and its expiry), or a static key.

use super::DEFAULT_TOKEN_TIMEOUT;
use super::builder::Builder;
use super::raw::{BodyFormat, RawParam, RawPrevious, RawToken};
use crate::param::Param;
use crate::token::Source;
use crate::token::json::{Body, Expiry, JsonEndpoint, Previous, Template};
use crate::token::oauth2::{ClientAuth, ClientCredentials};

impl Builder<'_> {
    pub(super) fn source(&mut self, upstream: &str, raw: RawToken) -> Option<Source> {
        match raw {
            RawToken::OAuth2 {
                url,
                client_id,
                client_secret,
                previous_client_secret,
                auth,
                scope,
                audience,
                extra,
                default_lifetime,
                timeout,
            } => {
                let url = self.url(upstream, "token.url", &url);
                let client_id = self.param(upstream, "token.client_id", client_id);
                let client_secret = self.secret(upstream, "token.client_secret", client_secret);
                let previous_client_secret = previous_client_secret
                    .and_then(|raw| self.optional_secret(upstream, "token.previous_client_secret", raw));
                let extra = self.params(upstream, "token.extra", extra);
                Some(Source::OAuth2(ClientCredentials {
                    url: url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    previous_client_secret,
                    auth: auth.unwrap_or(ClientAuth::Basic),
                    scope,
                    audience,
                    extra: extra?,
                    default_lifetime,
                    timeout: timeout.unwrap_or(DEFAULT_TOKEN_TIMEOUT),
                }))
            }
            RawToken::Json {
                url,
                method,
                headers,
                body,
                body_format,
                previous_secret,
                token_pointer,
                expires_in_pointer,
                expires_at_pointer,
                default_lifetime,
                timeout,
            } => {
                let url = self.url(upstream, "token.url", &url);
                let method = self.method(upstream, method.as_deref().unwrap_or("POST"));
                let headers = self.params(upstream, "token.headers", headers);
                let body = body.map(|t| self.body(upstream, t, body_format.unwrap_or(BodyFormat::Json))).transpose();
                for (field, ptr) in [
                    ("token.token_pointer", Some(&token_pointer)),
                    ("token.expires_in_pointer", expires_in_pointer.as_ref()),
                    ("token.expires_at_pointer", expires_at_pointer.as_ref()),
                ] {
                    if ptr.is_some_and(|p| !p.starts_with('/')) {
                        self.problem(
                            upstream,
                            field,
                            "must be a JSON pointer starting with '/', e.g. \"/access_token\"",
                        );
                    }
                }
                let expiry = match (expires_in_pointer, expires_at_pointer) {
                    (Some(_), Some(_)) => {
                        self.problem(
                            upstream,
                            "token.expires_at_pointer",
                            "set either expires_in_pointer or expires_at_pointer, not both",
                        );
                        None
                    }
                    (Some(p), None) => Some(Expiry::In(p)),
                    (None, Some(p)) => Some(Expiry::At(p)),
                    (None, None) if default_lifetime.is_none() => {
                        self.problem(
                            upstream,
                            "token.default_lifetime",
                            "required when neither expires_in_pointer nor expires_at_pointer is set",
                        );
                        None
                    }
                    (None, None) => Some(Expiry::Unspecified),
                };
                let previous = previous_secret.and_then(|raw| {
                    self.optional_secret(upstream, "token.previous_secret", RawParam::Env { env: raw.env.clone() })
                        .map(|value| (raw, value))
                });
                let mut source = JsonEndpoint {
                    method: method?,
                    url: url?,
                    headers: headers?,
                    body: body.ok()?,
                    previous: None,
                    token_pointer,
                    expiry: expiry?,
                    default_lifetime,
                    timeout: timeout.unwrap_or(DEFAULT_TOKEN_TIMEOUT),
                };
                if let Some((raw, value)) = previous {
                    source.previous = self.previous(upstream, &source, raw, value);
                }
                Some(Source::Json(source))
            }
            RawToken::Static { key } => self.secret(upstream, "token.key", key).map(Source::Static),
        }
    }

    /// Checks that `previous_secret.replaces` names one of the source's
    /// credentials read from the environment.
    fn previous(&mut self, upstream: &str, source: &JsonEndpoint, raw: RawPrevious, value: Param) -> Option<Previous> {
        let field = format!("token.{}", raw.replaces);
        let secrets: Vec<String> = source
            .credentials()
            .into_iter()
            .filter(|(_, p)| p.secret().is_some())
            .map(|(f, _)| f.trim_start_matches("token.").to_owned())
            .collect();
        if !secrets.iter().any(|f| format!("token.{f}") == field) {
            self.problem(
                upstream,
                "token.previous_secret.replaces",
                format_args!(
                    "\"{}\" is not a field of this source read from the environment; one of: {}",
                    raw.replaces,
                    if secrets.is_empty() { "(none)".to_owned() } else { secrets.join(", ") }
                ),
            );
            return None;
        }
        Some(Previous { field, value })
    }

    fn method(&mut self, upstream: &str, text: &str) -> Option<reqwest::Method> {
        match text.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT") => reqwest::Method::from_bytes(m.as_bytes()).ok(),
            _ => {
                self.problem(upstream, "token.method", format!("\"{text}\" is not one of GET, POST, PUT"));
                None
            }
        }
    }

    fn body(&mut self, upstream: &str, table: toml::Table, format: BodyFormat) -> Result<Body, ()> {
        match format {
            BodyFormat::Json => {
                self.template(upstream, "token.body", toml::Value::Table(table)).map(Body::Json).ok_or(())
            }
            BodyFormat::Form => {
                let mut fields = Vec::new();
                for (k, v) in table {
                    let field = format!("token.body.{k}");
                    match v.try_into::<RawParam>() {
                        Ok(raw) => fields.push((k, self.param(upstream, &field, raw))),
                        Err(_) => self.problem(upstream, &field, "form fields must be strings or { env = \"NAME\" }"),
                    }
                }
                fields.into_iter().map(|(k, p)| p.map(|p| (k, p))).collect::<Option<Vec<_>>>().map(Body::Form).ok_or(())
            }
        }
    }

    fn template(&mut self, upstream: &str, field: &str, v: toml::Value) -> Option<Template> {
        Some(match v {
            toml::Value::Table(t) if t.len() == 1 && t.get("env").is_some_and(toml::Value::is_str) => {
                let name = t["env"].as_str().unwrap_or_default().to_owned();
                Template::Param(self.param(upstream, field, RawParam::Env { env: name })?)
            }
            toml::Value::Table(t) => {
                let fields: Vec<_> = t
                    .into_iter()
                    .map(|(k, v)| {
                        let f = format!("{field}.{k}");
                        (k, self.template(upstream, &f, v))
                    })
                    .collect();
                Template::Object(fields.into_iter().map(|(k, t)| t.map(|t| (k, t))).collect::<Option<_>>()?)
            }
            toml::Value::Array(items) => {
                let items: Vec<_> = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| self.template(upstream, &format!("{field}[{i}]"), v))
                    .collect();
                Template::Array(items.into_iter().collect::<Option<_>>()?)
            }
            toml::Value::String(s) => Template::Literal(serde_json::Value::String(s)),
            toml::Value::Integer(i) => Template::Literal(i.into()),
            toml::Value::Float(f) => {
                Template::Literal(serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into))
            }
            toml::Value::Boolean(b) => Template::Literal(b.into()),
            toml::Value::Datetime(d) => Template::Literal(d.to_string().into()),
        })
    }
}

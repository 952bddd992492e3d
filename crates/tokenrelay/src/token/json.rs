//! A custom JSON token endpoint: any method, URL, headers and body built from
//! env references, with JSON pointers (RFC 6901) to the token and its expiry.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use serde_json::Value;
use url::Url;

use super::response::{self, Seconds};
use super::{Credential, Failure, Token};
use crate::param::Param;

/// A configured custom token endpoint.
#[derive(Debug)]
pub(crate) struct JsonEndpoint {
    pub(crate) method: reqwest::Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(String, Param)>,
    pub(crate) body: Option<Body>,
    pub(crate) token_pointer: String,
    pub(crate) expiry: Expiry,
    pub(crate) default_lifetime: Option<Duration>,
    pub(crate) timeout: Duration,
}

/// Where the response says when the token expires.
#[derive(Debug)]
pub(crate) enum Expiry {
    /// Nowhere: use the configured default lifetime.
    Unspecified,
    /// A pointer to a lifetime in seconds.
    In(String),
    /// A pointer to an absolute expiry: Unix seconds or an RFC 3339 date.
    At(String),
}

/// The request body.
#[derive(Debug)]
pub(crate) enum Body {
    Json(Template),
    Form(Vec<(String, Param)>),
}

/// A JSON value whose leaves may come from the environment.
#[derive(Debug)]
pub(crate) enum Template {
    Literal(Value),
    Param(Param),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

impl Template {
    fn render(&self) -> Value {
        match self {
            Template::Literal(v) => v.clone(),
            Template::Param(p) => Value::String(p.expose().to_owned()),
            Template::Array(items) => Value::Array(items.iter().map(Template::render).collect()),
            Template::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.render())).collect()),
        }
    }

    /// The values from the environment, named as the config builder names
    /// them (`token.body.a.b`, `token.body.list[0]`).
    fn credentials<'a>(&'a self, field: &str, out: &mut Vec<Credential<'a>>) {
        match self {
            Template::Literal(_) => {}
            Template::Param(p) => out.push((field.to_owned(), p)),
            Template::Array(items) => {
                items.iter().enumerate().for_each(|(i, t)| t.credentials(&format!("{field}[{i}]"), out));
            }
            Template::Object(fields) => fields.iter().for_each(|(k, t)| t.credentials(&format!("{field}.{k}"), out)),
        }
    }
}

impl JsonEndpoint {
    /// What the token is minted for: the request as sent, with the resolved
    /// values (see [`Source::identity`](super::Source::identity)).
    pub(crate) fn identity(&self) -> String {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        let body = match &self.body {
            Some(Body::Json(t)) => t.render(),
            Some(Body::Form(fields)) => fields.iter().map(|(k, v)| Value::from([k.as_str(), v.expose()])).collect(),
            None => Value::Null,
        };
        serde_json::json!(["json", self.method.as_str(), self.url.as_str(), headers, body]).to_string()
    }

    /// Every credential (headers, then body), in config order (see [`Credential`]).
    pub(crate) fn credentials(&self) -> Vec<Credential<'_>> {
        let mut out: Vec<Credential<'_>> =
            self.headers.iter().map(|(k, v)| (format!("token.headers.{k}"), v)).collect();
        match &self.body {
            Some(Body::Json(t)) => t.credentials("token.body", &mut out),
            Some(Body::Form(fields)) => out.extend(fields.iter().map(|(k, v)| (format!("token.body.{k}"), v))),
            None => {}
        }
        out
    }

    pub(crate) async fn fetch_once(&self, http: &reqwest::Client, upstream: &str) -> Result<Token, Failure> {
        let mut req =
            http.request(self.method.clone(), self.url.clone()).header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &self.headers {
            req = req.header(name, value.expose());
        }
        req = match &self.body {
            Some(Body::Json(t)) => req.json(&t.render()),
            Some(Body::Form(fields)) => {
                let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
                req.form(&pairs)
            }
            None => req,
        };
        let (status, body) = response::send(req, self.timeout).await?;
        if !status.is_success() {
            return Err(response::rejection(upstream, status, &body, &super::secrets(&self.credentials())));
        }
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| response::invalid(upstream, format!("HTTP {status} body is not JSON")))?;
        let token = match doc.pointer(&self.token_pointer) {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(_) => {
                return Err(response::invalid(upstream, format!("{} is not a non-empty string", self.token_pointer)));
            }
            None => return Err(response::invalid(upstream, format!("missing {}", self.token_pointer))),
        };
        let expires_at = self.expiry(&doc).map_err(|reason| response::invalid(upstream, reason))?;
        Ok(Token::new(token, Some(expires_at)))
    }

    fn expiry(&self, doc: &Value) -> Result<SystemTime, String> {
        let found = match &self.expiry {
            Expiry::Unspecified => None,
            Expiry::In(ptr) | Expiry::At(ptr) => doc.pointer(ptr).filter(|v| !v.is_null()).map(|v| (ptr, v)),
        };
        let Some((ptr, value)) = found else {
            let lifetime = self
                .default_lifetime
                .ok_or_else(|| "the response gives no expiry and no token.default_lifetime is configured".to_owned())?;
            return response::usable("token.default_lifetime", SystemTime::now().checked_add(lifetime));
        };
        let expires_at = match (&self.expiry, Seconds::of(value)) {
            (Expiry::In(_), Some(s)) => response::after(s),
            (Expiry::At(_), Some(s)) => response::unix(s),
            (Expiry::At(_), None) => Some(
                value
                    .as_str()
                    .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
                    .ok_or_else(|| format!("{ptr} is neither Unix seconds nor an RFC 3339 date"))?,
            ),
            _ => return Err(format!("{ptr} is not a number of seconds")),
        };
        response::usable(ptr, expires_at)
    }
}

//! A custom JSON token endpoint: any method, URL, headers and body built from
//! env references, with JSON pointers (RFC 6901) to the token and its expiry.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use serde_json::Value;
use url::Url;

use super::response::{self, Seconds};
use super::{Credential, Failure, Secret, Token};
use crate::param::Param;

/// A configured custom token endpoint.
#[derive(Debug)]
pub(crate) struct JsonEndpoint {
    pub(crate) method: reqwest::Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(String, Param)>,
    pub(crate) body: Option<Body>,
    /// The secret being rotated out and the field it replaces (see [`super::fallback`]).
    pub(crate) previous: Option<Previous>,
    pub(crate) token_pointer: String,
    pub(crate) expiry: Expiry,
    pub(crate) default_lifetime: Option<Duration>,
    pub(crate) timeout: Duration,
}

/// `previous_secret = { env = "…", replaces = "body.secret" }`: the value
/// sent in place of one credential when the endpoint refuses the current one.
#[derive(Debug)]
pub(crate) struct Previous {
    /// The replaced credential's field as [`JsonEndpoint::credentials`] names
    /// it, e.g. `token.body.secret` or `token.headers.X-Key`.
    pub(crate) field: String,
    pub(crate) value: Param,
}

/// The credential to send in place of another: `(field, value)`.
type Swap<'a> = Option<(&'a str, &'a Param)>;

/// The value of `param`, named `field`, unless `swap` replaces that field.
fn pick<'a>(field: &str, param: &'a Param, swap: Swap<'a>) -> &'a str {
    match swap {
        Some((f, p)) if f == field => p.expose(),
        _ => param.expose(),
    }
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

/// The body as sent, its values resolved.
enum Rendered<'a> {
    Json(Value),
    Form(Vec<(&'a str, &'a str)>),
    None,
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
    /// The JSON to send; `field` names this value as [`Template::credentials`] does.
    fn render(&self, field: &str, swap: Swap<'_>) -> Value {
        match self {
            Template::Literal(v) => v.clone(),
            Template::Param(p) => Value::String(pick(field, p, swap).to_owned()),
            Template::Array(items) => {
                Value::Array(items.iter().enumerate().map(|(i, t)| t.render(&format!("{field}[{i}]"), swap)).collect())
            }
            Template::Object(fields) => Value::Object(
                fields.iter().map(|(k, v)| (k.clone(), v.render(&format!("{field}.{k}"), swap))).collect(),
            ),
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
    /// values (see [`Source::identity`](super::Source::identity)). With a
    /// previous secret, the field it replaces counts as the pair of its two
    /// values, in sorted order: a token minted with either is the same token,
    /// and swapping the two (a rollback) keeps the key.
    pub(crate) fn identity(&self) -> String {
        let blank = Param::Literal(String::new());
        let swap = self.previous.as_ref().map(|p| (p.field.as_str(), &blank));
        let (headers, body) = self.request_parts(swap);
        let body = match body {
            Rendered::Json(v) => v,
            Rendered::Form(fields) => fields.into_iter().map(|(k, v)| Value::from([k, v])).collect(),
            Rendered::None => Value::Null,
        };
        let mut identity = serde_json::json!(["json", self.method.as_str(), self.url.as_str(), headers, body]);
        if self.previous.is_some()
            && let Value::Array(parts) = &mut identity
        {
            let mut pair: Vec<String> =
                [Secret::Current, Secret::Previous].into_iter().filter_map(|s| self.secret_value(s)).collect();
            pair.sort();
            parts.push(pair.into());
        }
        identity.to_string()
    }

    /// The headers and body to send, with `swap` applied.
    fn request_parts<'a>(&'a self, swap: Swap<'a>) -> (Vec<(&'a str, &'a str)>, Rendered<'a>) {
        let headers =
            self.headers.iter().map(|(k, v)| (k.as_str(), pick(&format!("token.headers.{k}"), v, swap))).collect();
        let body = match &self.body {
            Some(Body::Json(t)) => Rendered::Json(t.render("token.body", swap)),
            Some(Body::Form(fields)) => Rendered::Form(
                fields.iter().map(|(k, v)| (k.as_str(), pick(&format!("token.body.{k}"), v, swap))).collect(),
            ),
            None => Rendered::None,
        };
        (headers, body)
    }

    /// The value of the current or previous secret (see
    /// [`Source::secret_value`](super::Source::secret_value)).
    pub(crate) fn secret_value(&self, which: Secret) -> Option<String> {
        let Some(previous) = &self.previous else {
            return (which == Secret::Current).then(|| self.identity());
        };
        match which {
            Secret::Previous => Some(previous.value.expose().to_owned()),
            Secret::Current => self
                .credentials()
                .into_iter()
                .find(|(field, _)| *field == previous.field)
                .map(|(_, p)| p.expose().to_owned()),
        }
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
        out.extend(self.previous.iter().map(|p| ("token.previous_secret".to_owned(), &p.value)));
        out
    }

    pub(crate) async fn fetch_once(
        &self,
        http: &reqwest::Client,
        upstream: &str,
        secret: Secret,
    ) -> Result<Token, Failure> {
        let swap = match (secret, &self.previous) {
            (Secret::Previous, Some(p)) => Some((p.field.as_str(), &p.value)),
            _ => None,
        };
        let (headers, body) = self.request_parts(swap);
        let mut req =
            http.request(self.method.clone(), self.url.clone()).header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req = match body {
            Rendered::Json(v) => req.json(&v),
            Rendered::Form(pairs) => req.form(&pairs),
            Rendered::None => req,
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

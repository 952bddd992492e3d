//! Where the token goes on the upstream request (`relay.inject`) and the
//! extra headers sent with it (`relay.headers`), validated.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};

use crate::config::builder::Builder;
use crate::config::raw::{RawInject, RawParam};
use crate::param::Param;

/// Where the token goes when `inject` is not set: `Authorization: Bearer <token>`
/// (RFC 6750 §2.1).
const DEFAULT_TOKEN_HEADER: &str = "authorization";
const DEFAULT_TOKEN_FORMAT: &str = "Bearer {token}";
const TOKEN_PLACEHOLDER: &str = "{token}";
/// Headers the relay sets or the transport owns; configuring them would break framing or routing.
const RESERVED_HEADERS: [&str; 6] = ["host", "content-length", "transfer-encoding", "connection", "cookie", "upgrade"];

/// How the token is put on the outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inject {
    /// A header whose value is `prefix + token + suffix`.
    Header { name: HeaderName, prefix: String, suffix: String },
    /// A query parameter.
    Query { name: String },
}

impl Builder<'_> {
    pub(super) fn inject(&mut self, upstream: &str, raw: RawInject) -> Option<Inject> {
        match raw {
            RawInject { query: Some(_), header: Some(_), .. } | RawInject { query: Some(_), format: Some(_), .. } => {
                self.problem(upstream, "relay.inject", "set either query, or header and format, not both");
                None
            }
            RawInject { query: Some(name), .. } => {
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                    Some(Inject::Query { name })
                } else {
                    self.problem(
                        upstream,
                        "relay.inject.query",
                        "must be a parameter name of letters, digits and - . _ ~",
                    );
                    None
                }
            }
            RawInject { header, format, .. } => {
                let name = header.as_deref().unwrap_or(DEFAULT_TOKEN_HEADER);
                let name = match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.problem(upstream, "relay.inject.header", format!("\"{name}\" is not a valid header name"));
                        None
                    }
                };
                let format = format.as_deref().unwrap_or(DEFAULT_TOKEN_FORMAT);
                let parts = match format.split_once(TOKEN_PLACEHOLDER) {
                    Some((prefix, suffix))
                        if !suffix.contains(TOKEN_PLACEHOLDER)
                            && HeaderValue::from_str(&format.replace(TOKEN_PLACEHOLDER, "")).is_ok() =>
                    {
                        Some((prefix.to_owned(), suffix.to_owned()))
                    }
                    _ => {
                        self.problem(
                            upstream,
                            "relay.inject.format",
                            "must contain {token} exactly once, e.g. \"Bearer {token}\", and no control characters",
                        );
                        None
                    }
                };
                let (prefix, suffix) = parts?;
                Some(Inject::Header { name: name?, prefix, suffix })
            }
        }
    }

    pub(super) fn extra_headers(
        &mut self,
        upstream: &str,
        raw: BTreeMap<String, RawParam>,
        inject: Option<&Inject>,
    ) -> Option<Vec<(HeaderName, Param)>> {
        let mut out = Some(Vec::new());
        for (name, value) in raw {
            let field = format!("relay.headers.{name}");
            let header = match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => {
                    self.problem(upstream, &field, "is set by the relay or the transport and cannot be configured");
                    None
                }
                Ok(h) if matches!(inject, Some(Inject::Header { name, .. }) if *name == h) => {
                    self.problem(upstream, &field, "is already where the token goes (relay.inject.header)");
                    None
                }
                Ok(h) => Some(h),
                Err(_) => {
                    self.problem(upstream, &field, "is not a valid header name");
                    None
                }
            };
            // The value is checked without echoing it: it may be a secret.
            let param = self.param(upstream, &field, value).filter(|p| {
                let ok = HeaderValue::from_str(p.expose()).is_ok();
                if !ok {
                    self.problem(
                        upstream,
                        &field,
                        "value is not a valid header value (control characters or non-ASCII)",
                    );
                }
                ok
            });
            out = match (out, header, param) {
                (Some(mut v), Some(h), Some(p)) => {
                    v.push((h, p));
                    Some(v)
                }
                _ => None,
            };
        }
        out
    }
}

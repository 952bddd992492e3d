//! OAuth 2.0 client credentials grant (RFC 6749 §4.4).
//!
//! Written on reqwest rather than the `oauth2` crate: that crate's standard
//! token response requires `expires_in` to be a JSON number, while Getty
//! Images (the motivating API) sends `"1800"`, and its client-credentials
//! flow would add a second HTTP client abstraction for one form POST.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use super::response::{self, Seconds};
use super::{Credential, Failure, Secret, Token};
use crate::param::Param;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret (the RFC's preferred way).
    Basic,
    /// `client_id` and `client_secret` in the request body.
    Form,
}

/// A configured client credentials exchange.
#[derive(Debug)]
pub(crate) struct ClientCredentials {
    pub(crate) url: Url,
    pub(crate) client_id: Param,
    pub(crate) client_secret: Param,
    /// The secret being rotated out, tried when the endpoint refuses
    /// `client_secret` (see [`super::fallback`]).
    pub(crate) previous_client_secret: Option<Param>,
    pub(crate) auth: ClientAuth,
    pub(crate) scope: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) extra: Vec<(String, Param)>,
    pub(crate) default_lifetime: Option<Duration>,
    pub(crate) timeout: Duration,
}

/// RFC 6749 §5.1 successful response (the fields we use).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<Seconds>,
}

impl ClientCredentials {
    /// What the token is minted for (see [`Source::identity`](super::Source::identity)).
    /// Never the client secret: a token minted with the current or the
    /// previous one is the same client's token, under the same store key.
    pub(crate) fn identity(&self) -> String {
        let extra: Vec<(&str, &str)> = self.extra.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        serde_json::json!(["oauth2", self.url.as_str(), self.client_id.expose(), self.scope, self.audience, extra])
            .to_string()
    }

    /// Every credential, in config order (see [`Credential`]).
    pub(crate) fn credentials(&self) -> Vec<Credential<'_>> {
        let mut out = vec![
            ("token.client_id".to_owned(), &self.client_id),
            ("token.client_secret".to_owned(), &self.client_secret),
        ];
        out.extend(self.previous_client_secret.iter().map(|p| ("token.previous_client_secret".to_owned(), p)));
        out.extend(self.extra.iter().map(|(k, v)| (format!("token.extra.{k}"), v)));
        out
    }

    pub(crate) async fn fetch_once(
        &self,
        http: &reqwest::Client,
        upstream: &str,
        secret: Secret,
    ) -> Result<Token, Failure> {
        let client_secret = match (secret, &self.previous_client_secret) {
            (Secret::Previous, Some(previous)) => previous,
            _ => &self.client_secret,
        };
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        form.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.expose())));
        let mut req = http.post(self.url.clone()).header(reqwest::header::ACCEPT, "application/json");
        match self.auth {
            ClientAuth::Basic => {
                // §2.3.1: id and secret are form-urlencoded before Base64.
                let id = form_encode(self.client_id.expose());
                let secret = form_encode(client_secret.expose());
                req = req.basic_auth(id, Some(secret));
            }
            ClientAuth::Form => {
                form.push(("client_id", self.client_id.expose()));
                form.push(("client_secret", client_secret.expose()));
            }
        }
        let (status, body) = response::send(req.form(&form), self.timeout).await?;
        if !status.is_success() {
            return Err(response::rejection(upstream, status, &body, &super::secrets(&self.credentials())));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| response::invalid(upstream, format!("HTTP {status} body is not a JSON token response")))?;
        let Some(access_token) = parsed.access_token.filter(|t| !t.is_empty()) else {
            return Err(response::invalid(upstream, "missing \"access_token\""));
        };
        let expires_at = match (&parsed.expires_in, self.default_lifetime) {
            (Some(s), _) => {
                let secs = s
                    .value()
                    .ok_or_else(|| response::invalid(upstream, "\"expires_in\" is not a number of seconds"))?;
                response::usable("\"expires_in\"", response::after(secs))
            }
            (None, Some(lifetime)) => {
                response::usable("token.default_lifetime", SystemTime::now().checked_add(lifetime))
            }
            (None, None) => {
                return Err(response::invalid(
                    upstream,
                    "no \"expires_in\" in the response and no token.default_lifetime configured",
                ));
            }
        }
        .map_err(|reason| response::invalid(upstream, reason))?;
        Ok(Token::new(access_token, Some(expires_at)))
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

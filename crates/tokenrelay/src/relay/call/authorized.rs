//! The innermost call: the token from the [`Broker`] (memory, store, or the
//! token endpoint), `inject`ed as the upstream expects it, and the request
//! sent within `relay.timeout`.

use std::time::Instant;

use base64::Engine as _;
use http::HeaderValue;
use http::header::{AUTHORIZATION, HOST};
use url::Url;

use super::{Call, ColdPlan, ColdRead, Cx, Exchange};
use crate::alerts::Alerts;
use crate::broker::Broker;
use crate::relay::error::{Kind, RelayError};
use crate::relay::outgoing::Outgoing;
use crate::relay::{inject, path};

/// Sends each call with the upstream's current token, and alerts when the
/// previous secret had to mint it.
#[derive(Clone)]
pub(in crate::relay) struct Authorized {
    broker: Broker,
    alerts: Alerts,
}

impl Authorized {
    pub(in crate::relay) fn new(broker: Broker, alerts: Alerts) -> Self {
        Self { broker, alerts }
    }
}

impl Call for Authorized {
    async fn call(&self, out: &Outgoing<'_>, cx: &mut Cx<'_>) -> Result<Exchange, RelayError> {
        let name = out.upstream.name();
        let started = Instant::now();
        let (token, refresh) = self.broker.token_and_refresh(name).await.map_err(Kind::Token)?;
        cx.timing.add_token(started.elapsed(), token.outcome());
        if self.broker.take_minted_with_previous(name) {
            self.alerts.previous_secret(name);
        }
        // A refresh the token made due runs alongside the upstream call.
        if let Some(refresh) = refresh {
            cx.chores.add(refresh);
        }
        let credentials = inject::credentials(out.relay, name, &token).map_err(Kind::Token)?;
        let param = credentials.query.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
        let url = path::outgoing_url(out.upstream.base_url(), out.segments, out.query, param)?;
        let (uri, basic) = request_target(url)?;
        let mut request = http::Request::new(http_body_util::Full::new(out.body.clone()));
        *request.method_mut() = out.method.clone();
        *request.uri_mut() = uri;
        // One map, sized once: the upstream's Host (written once, in the
        // config), the forwarded headers, then the injected ones, each
        // injected name replacing what came before it.
        let headers = request.headers_mut();
        headers.reserve(out.headers.len() + credentials.headers.len() + 2);
        headers.extend(out.upstream.host.clone().map(|value| (HOST, value)));
        headers.extend(basic.map(|value| (AUTHORIZATION, value)));
        for (name, value) in &out.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.extend(credentials.headers);
        let started = Instant::now();
        let result = self.broker.upstream_http().send(request, out.timeout).await;
        cx.timing.add_upstream(started.elapsed());
        let response = result.map_err(|e| RelayError::from_send(&e, out.timeout))?;
        Ok(Exchange { response, token })
    }

    fn plan<'a>(&'a self, out: &Outgoing<'_>, plan: &mut ColdPlan<'a>) {
        plan.token = self.broker.keys_to_read(out.upstream.name());
    }

    fn learn(&self, out: &Outgoing<'_>, read: &mut ColdRead) {
        if let Some(token) = read.token.take() {
            self.broker.adopt(out.upstream.name(), &token);
        }
    }
}

/// `url` as the request's target, without its user info, and that user info
/// as the Basic credentials (RFC 7617) it stood for, as reqwest sent them
/// when it made the upstream calls: an upstream's `base_url` may carry them.
fn request_target(mut url: Url) -> Result<(http::Uri, Option<HeaderValue>), RelayError> {
    let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|s| s.into_owned());
    let password = url.password().and_then(|p| decoded(p).ok());
    let basic = match decoded(url.username()) {
        Ok(user) if !user.is_empty() || password.is_some() => {
            let _ = (url.set_username(""), url.set_password(None));
            let pair = format!("{user}:{}", password.unwrap_or_default());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok();
            value.iter_mut().for_each(|v| v.set_sensitive(true));
            value
        }
        _ => None,
    };
    // As reqwest failed it: a URL that is no URI is a request that could not be made.
    let uri = http::Uri::try_from(url.as_str())
        .map_err(|_| RelayError::from(Kind::UpstreamUnreachable("request failed: URL is not a valid URI".into())))?;
    Ok((uri, basic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_urls_user_info_is_sent_as_basic_credentials_not_in_the_target() {
        let url = Url::parse("https://us%65r:p%40ss@api.example.com/v1/x?q=1").unwrap();
        let (uri, basic) = request_target(url).unwrap();
        assert_eq!(uri.to_string(), "https://api.example.com/v1/x?q=1");
        let basic = basic.expect("Basic credentials");
        assert_eq!(basic, "Basic dXNlcjpwQHNz", "user:p@ss, decoded");
        assert!(basic.is_sensitive());
        let (uri, basic) = request_target(Url::parse("http://127.0.0.1:8080/x").unwrap()).unwrap();
        assert_eq!((uri.to_string().as_str(), basic), ("http://127.0.0.1:8080/x", None));
    }
}

//! The innermost call: the token from the [`Broker`] (memory, store, or the
//! token endpoint), `inject`ed as the upstream expects it, and the request
//! sent within `relay.timeout`.

use std::time::Instant;

use http::header::{AUTHORIZATION, HOST};

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
        let origin = &out.upstream.origin;
        let uri = path::outgoing_uri(origin, out.segments, out.query, param)?;
        let mut request = http::Request::new(http_body_util::Full::new(out.body.clone()));
        *request.method_mut() = out.method.clone();
        *request.uri_mut() = uri;
        // One map, sized once: the upstream's Host and Basic credentials
        // (written once, in the config), the forwarded headers, then the
        // injected ones, each injected name replacing what came before it.
        let headers = request.headers_mut();
        headers.reserve(out.headers.len() + credentials.headers.len() + 2);
        headers.insert(HOST, origin.host.clone());
        headers.extend(origin.basic.clone().map(|value| (AUTHORIZATION, value)));
        for (name, value) in &out.headers {
            headers.append(name.clone(), value.clone());
        }
        for (name, value) in credentials.headers {
            headers.insert(name, value);
        }
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

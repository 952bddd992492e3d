//! Metering of the upstream calls (`relay::meter`): each call that went
//! out, its latency, and the token it needed (fetched from the token
//! endpoint, or failed). Below the budget: a refused call is no call; a
//! 401's retry passes through it again and is a second call.

use std::time::Duration;

use super::{Call, ColdPlan, ColdRead, Cx, Exchange};
use crate::relay::error::RelayError;
use crate::relay::meter::{CALLS, Field, Meter, TOKEN_FAILURES, TOKEN_FETCHES};
use crate::relay::outgoing::Outgoing;
use crate::token::Provenance;

/// Counts each call of `inner` on the meter.
#[derive(Clone)]
pub(in crate::relay) struct Metered<S> {
    inner: S,
    meter: Meter,
}

impl<S> Metered<S> {
    pub(in crate::relay) fn new(inner: S, meter: Meter) -> Self {
        Self { inner, meter }
    }
}

impl<S: Call> Call for Metered<S> {
    async fn call(&self, out: &Outgoing<'_>, cx: &mut Cx<'_>) -> Result<Exchange, RelayError> {
        let (sent_before, token_before) = (cx.timing.upstream, cx.timing.token.map(|(d, _)| d));
        let result = self.inner.call(out, cx).await;
        let mut fields = Vec::with_capacity(3);
        // The upstream time grew: this call went out (answered or not).
        if let Some(sent) = cx.timing.upstream.filter(|_| cx.timing.upstream != sent_before) {
            fields.push(Field::Named(CALLS));
            fields.push(Field::latency(sent.saturating_sub(sent_before.unwrap_or(Duration::ZERO))));
        }
        let token = cx.timing.token.filter(|(d, _)| Some(*d) != token_before).map(|(_, outcome)| outcome);
        if matches!(token, Some(Provenance::Fetched | Provenance::Direct)) {
            fields.push(Field::Named(TOKEN_FETCHES));
        }
        if result.as_ref().is_err_and(RelayError::is_token) {
            fields.push(Field::Named(TOKEN_FAILURES));
        }
        if !fields.is_empty() {
            self.meter.add(Some(out.upstream.name()), Some(out.route.pattern.as_str()), &fields, None);
        }
        result
    }

    fn plan<'a>(&'a self, out: &Outgoing<'_>, plan: &mut ColdPlan<'a>) {
        self.inner.plan(out, plan);
    }

    fn learn(&self, out: &Outgoing<'_>, read: &mut ColdRead) {
        self.inner.learn(out, read);
    }
}

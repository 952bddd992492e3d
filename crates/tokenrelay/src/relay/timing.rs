//! The `Server-Timing` header (W3C Server Timing): how long the token took,
//! and from where, versus how long the upstream took to answer.

use std::time::Duration;

use http::HeaderValue;

use crate::token::Provenance;

/// Durations of one relayed request; retries add up.
#[derive(Debug, Default)]
pub(super) struct Timing {
    pub(super) token: Option<(Duration, Provenance)>,
    pub(super) upstream: Option<Duration>,
    /// Time spent in the response cache, and how it answered (its log name).
    pub(super) cache: Option<(Duration, &'static str)>,
}

impl Timing {
    pub(super) fn add_token(&mut self, took: Duration, outcome: Provenance) {
        let before = self.token.map_or(Duration::ZERO, |(d, _)| d);
        self.token = Some((before + took, outcome));
    }

    pub(super) fn add_upstream(&mut self, took: Duration) {
        self.upstream = Some(self.upstream.unwrap_or_default() + took);
    }

    /// `cache;dur=0.2;desc="miss", token;dur=0.4;desc="memory", upstream;dur=182.3`, or `None` before any ran.
    pub(super) fn header(&self) -> Option<HeaderValue> {
        // One buffer, written once per request.
        let mut value = String::with_capacity(96);
        if let Some((d, o)) = self.cache {
            entry(&mut value, "cache", d, Some(o));
        }
        if let Some((d, o)) = self.token {
            entry(&mut value, "token", d, Some(o.as_str()));
        }
        if let Some(d) = self.upstream {
            entry(&mut value, "upstream", d, None);
        }
        (!value.is_empty()).then(|| HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()).flatten()
    }
}

/// Appends `name;dur=<ms, one decimal>[;desc="<desc>"]` to `value`, after a
/// `, ` if it holds one already. The milliseconds are written from whole
/// tenths, without the formatting machinery: it cost more than the rest of the header.
fn entry(value: &mut String, name: &str, took: Duration, desc: Option<&str>) {
    let tenths = (took.as_micros() + 50) / 100;
    if !value.is_empty() {
        value.push_str(", ");
    }
    value.push_str(name);
    value.push_str(";dur=");
    value.push_str(itoa::Buffer::new().format(tenths / 10));
    value.push('.');
    value.push_str(itoa::Buffer::new().format(tenths % 10));
    if let Some(desc) = desc {
        value.push_str(";desc=\"");
        value.push_str(desc);
        value.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_splits_token_and_upstream_time() {
        let mut t = Timing::default();
        assert!(t.header().is_none());
        t.add_token(Duration::from_micros(400), Provenance::Memory);
        t.add_upstream(Duration::from_millis(180));
        t.add_upstream(Duration::from_micros(2300));
        assert_eq!(t.header().unwrap(), "token;dur=0.4;desc=\"memory\", upstream;dur=182.3");
        t.cache = Some((Duration::from_micros(300), "miss"));
        assert!(t.header().unwrap().to_str().unwrap().starts_with("cache;dur=0.3;desc=\"miss\", token;"));
        let mut rounded = Timing::default();
        rounded.add_upstream(Duration::from_micros(12_349));
        assert_eq!(rounded.header().unwrap(), "upstream;dur=12.3");
        rounded.add_upstream(Duration::from_micros(1));
        assert_eq!(rounded.header().unwrap(), "upstream;dur=12.4", "to the nearest tenth");
    }
}

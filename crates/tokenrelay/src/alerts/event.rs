//! What an alert says: its kind, its subject (upstream, route), the window
//! it is about, its figures, and the JSON body a Slack or Discord incoming
//! webhook accepts as it is.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::clock::millis;

crate::stable_codes! {
    /// Every kind of alert, as its body's `tokenrelay.kind` names it.
    pub enum AlertKind {
        /// A budget's window is 80% spent.
        Budget80 = "budget_80",
        /// A budget's window is spent: calls are refused until it ends.
        Budget100 = "budget_100",
        /// Calls in the last hour over `spike_factor` × the trailing 24 hours' hourly mean.
        Spike = "spike",
        /// A rate limit's window met more addresses than an instance tracks:
        /// the rest share one bucket (a spray over many addresses).
        Crowd = "crowd",
        /// Refusals on unknown routes or rejected paths over `probing_refusals` an hour.
        Probing = "probing",
        /// The token endpoint failed: the upstream's token failure cooldown started.
        TokenFailing = "token_failing",
        /// The upstream asked the site to wait (a 429/503 with `Retry-After`, or no quota left).
        UpstreamWait = "upstream_wait",
        /// The token endpoint refused the current secret and the previous one
        /// minted the token: the previous secret must not be revoked yet.
        PreviousSecret = "previous_secret",
        /// The build's leak scan found a secret in the output.
        Leak = "leak",
        /// `tokenrelay alert test`.
        Test = "test",
    }
}

/// The window an event is about: number `number` of `length`, aligned to
/// the Unix epoch like the counters' windows. Each occurrence is sent once
/// per kind, subject and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Window {
    pub(crate) number: u64,
    pub(crate) length: Duration,
}

impl Window {
    /// The window of `length` that `now_ms` is in.
    pub(crate) fn at(now_ms: u64, length: Duration) -> Self {
        Self { number: now_ms / millis(length).max(1), length }
    }

    /// Its start, in ms since the epoch.
    pub(crate) fn start_ms(&self) -> u64 {
        self.number.saturating_mul(millis(self.length))
    }

    /// Its end, in ms since the epoch.
    pub(crate) fn end_ms(&self) -> u64 {
        self.start_ms().saturating_add(millis(self.length))
    }
}

/// One occurrence of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) kind: AlertKind,
    pub(crate) upstream: Option<String>,
    /// A route pattern, for a route's own budget.
    pub(crate) route: Option<String>,
    pub(crate) window: Window,
    /// Named figures (counts, thresholds), in the order the text uses them.
    pub(crate) figures: Vec<(&'static str, u64)>,
    /// Further lines (a leak's files and variables), never a value.
    pub(crate) notes: Vec<String>,
}

/// The most a Discord `content` may hold (discord.com/developers/docs/resources/webhook#execute-webhook).
const MAX_TEXT_CHARS: usize = 2000;

/// The webhook's JSON body: `text` for Slack (docs.slack.dev, incoming
/// webhooks), `content` for Discord (its execute-webhook parameters), the
/// same words in both; each ignores the other's field and `tokenrelay`,
/// which carries the structured fields for any other receiver.
#[derive(Debug, Serialize)]
pub(crate) struct Body<'a> {
    text: String,
    content: String,
    tokenrelay: Fields<'a>,
}

#[derive(Debug, Serialize)]
struct Fields<'a> {
    kind: &'static str,
    upstream: Option<&'a str>,
    route: Option<&'a str>,
    window: WindowFields,
    figures: serde_json::Map<String, serde_json::Value>,
    notes: &'a [String],
}

#[derive(Debug, Serialize)]
struct WindowFields {
    /// RFC 3339, UTC.
    start: String,
    seconds: u64,
}

impl Event {
    /// An event of `kind` about `upstream` in `window`, without figures yet.
    pub(crate) fn new(kind: AlertKind, upstream: Option<&str>, window: Window) -> Self {
        Self {
            kind,
            upstream: upstream.map(str::to_owned),
            route: None,
            window,
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The same, about `route`.
    pub(crate) fn on_route(mut self, route: Option<&str>) -> Self {
        self.route = route.map(str::to_owned);
        self
    }

    /// The same, with the figure `name`.
    pub(crate) fn figure(mut self, name: &'static str, value: u64) -> Self {
        self.figures.push((name, value));
        self
    }

    fn get(&self, name: &str) -> u64 {
        self.figures.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    }

    /// One line a person reads in the channel.
    pub(crate) fn text(&self) -> String {
        let subject = match (&self.upstream, &self.route) {
            (Some(u), Some(r)) => format!("upstream \"{u}\", route {r}"),
            (Some(u), None) => format!("upstream \"{u}\""),
            _ => "the site".to_owned(),
        };
        let per = humantime::format_duration(self.window.length);
        let what = match self.kind {
            AlertKind::Budget80 | AlertKind::Budget100 => {
                format!("{}% of the budget is spent, of {} calls per {per}", self.get("percent"), self.get("requests"))
            }
            AlertKind::Spike => format!(
                "usage spike: {} calls in the last hour, against {} in the 24 hours before",
                self.get("calls"),
                self.get("trailing_calls"),
            ),
            AlertKind::Crowd => format!(
                "more than {} addresses in one rate-limit window: the rest share one bucket (a spray over many addresses?)",
                self.get("tracked_clients"),
            ),
            AlertKind::Probing => format!(
                "{} refusals on unknown routes or rejected paths this hour: someone may be probing",
                self.get("refusals"),
            ),
            AlertKind::TokenFailing => "the token endpoint is failing: requests wait out its cooldown".to_owned(),
            AlertKind::UpstreamWait => {
                format!(
                    "the upstream asked the site to wait {} s; calls to it are refused until then",
                    self.get("wait_secs")
                )
            }
            AlertKind::PreviousSecret => "the token endpoint refused the current secret and the previous one minted the token: fix the current secret before revoking the previous one".to_owned(),
            AlertKind::Leak => format!("the build's leak scan found {} secret(s) in the output", self.get("findings")),
            AlertKind::Test => "a test alert (tokenrelay alert test): the webhook works".to_owned(),
        };
        let mut text = format!("tokenrelay: {subject}: {what}");
        for note in &self.notes {
            text.push_str("\n- ");
            text.push_str(note);
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            text = text.chars().take(MAX_TEXT_CHARS - 1).collect::<String>() + "…";
        }
        text
    }

    /// The JSON body to post.
    pub(crate) fn body(&self) -> Body<'_> {
        let text = self.text();
        let start = UNIX_EPOCH + Duration::from_millis(self.window.start_ms());
        Body {
            content: text.clone(),
            text,
            tokenrelay: Fields {
                kind: self.kind.as_str(),
                upstream: self.upstream.as_deref(),
                route: self.route.as_deref(),
                window: WindowFields {
                    start: humantime::format_rfc3339_seconds(start).to_string(),
                    seconds: self.window.length.as_secs(),
                },
                figures: self.figures.iter().map(|(n, v)| ((*n).to_owned(), (*v).into())).collect(),
                notes: &self.notes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_same_text_for_slack_and_discord_and_the_structured_fields() {
        let day = Duration::from_secs(86_400);
        let event = Event::new(AlertKind::Budget80, Some("getty"), Window { number: 20_428, length: day })
            .on_route(Some("/search/**"))
            .figure("percent", 80)
            .figure("requests", 20);
        let body = serde_json::to_value(event.body()).unwrap();
        let text = "tokenrelay: upstream \"getty\", route /search/**: 80% of the budget is spent, of 20 calls per 1day";
        assert_eq!(body["text"], text);
        assert_eq!(body["content"], text, "Discord's field, the same words");
        let fields = &body["tokenrelay"];
        assert_eq!(fields["kind"], "budget_80");
        assert_eq!((&fields["upstream"], &fields["route"]), (&"getty".into(), &"/search/**".into()));
        assert_eq!(fields["window"]["start"], "2025-12-06T00:00:00Z");
        assert_eq!(fields["window"]["seconds"], 86_400);
        assert_eq!(fields["figures"], serde_json::json!({ "percent": 80, "requests": 20 }));
    }

    #[test]
    fn a_long_text_is_cut_to_what_discord_takes() {
        let mut event = Event::new(AlertKind::Leak, None, Window::at(0, Duration::from_secs(60)));
        event.notes = (0..500).map(|i| format!("public/page-{i}.html: GETTY_API_SECRET")).collect();
        assert_eq!(event.text().chars().count(), MAX_TEXT_CHARS);
    }
}

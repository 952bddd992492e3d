//! `[alerts]`: where the relay's alerts go (a Slack or Discord incoming
//! webhook, its URL a secret read from the environment) and the thresholds
//! of the events that are not fixed by another setting (see `crate::alerts`).
//!
//! ```toml
//! [alerts]
//! webhook = { env = "TOKENRELAY_ALERT_WEBHOOK" }
//! # spike_factor = 3.0        # calls in the last hour over this × the trailing 24 hours' hourly mean
//! # spike_min_calls = 100     # and at least this many
//! # spike_check = "1m"        # how often an instance reads the hourly calls (one store call)
//! # probing_refusals = 50     # refusals on unknown routes or rejected paths per upstream and hour
//! ```

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::builder::Builder;
use super::raw::{RawAlerts, RawParam};
use crate::error::MissingVar;

/// Calls in the last hour over this factor of the trailing hourly mean are a spike.
pub const DEFAULT_SPIKE_FACTOR: f64 = 3.0;
/// Fewer calls than this in an hour are never a spike, whatever the mean.
pub const DEFAULT_SPIKE_MIN_CALLS: u64 = 100;
/// How often an instance checks the hourly calls for a spike.
pub const DEFAULT_SPIKE_CHECK: Duration = Duration::from_secs(60);
/// Refusals on unknown routes or rejected paths per upstream and hour that mean probing.
pub const DEFAULT_PROBING_REFUSALS: u64 = 50;

const HOUR: Duration = Duration::from_secs(3600);

/// The validated `[alerts]` table.
#[derive(Clone)]
pub(crate) struct AlertSettings {
    /// The incoming webhook's URL: a secret (who holds it can post to the channel).
    pub(crate) webhook: Webhook,
    pub(crate) spike_factor: f64,
    pub(crate) spike_min_calls: u64,
    pub(crate) spike_check: Duration,
    pub(crate) probing_refusals: u64,
}

/// An incoming webhook's URL, shown only where it goes on the wire.
#[derive(Clone)]
pub(crate) struct Webhook {
    /// The variable it was read from, for messages.
    pub(crate) var: String,
    url: SecretString,
}

impl Webhook {
    /// The URL to post to.
    pub(crate) fn expose(&self) -> &str {
        self.url.expose_secret()
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Webhook(${} [REDACTED])", self.var)
    }
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("webhook", &self.webhook)
            .field("spike_factor", &self.spike_factor)
            .field("spike_min_calls", &self.spike_min_calls)
            .field("spike_check", &self.spike_check)
            .field("probing_refusals", &self.probing_refusals)
            .finish()
    }
}

impl Builder<'_> {
    /// `[alerts]`, when the file has one.
    pub(super) fn alerts(&mut self, raw: Option<RawAlerts>) -> Option<AlertSettings> {
        let raw = raw?;
        let webhook = self.webhook(raw.webhook);
        let spike_factor = raw.spike_factor.unwrap_or(DEFAULT_SPIKE_FACTOR);
        if !(spike_factor.is_finite() && spike_factor >= 1.0) {
            self.problems.push("alerts.spike_factor: must be a number of at least 1".to_owned());
        }
        let spike_check = raw.spike_check.unwrap_or(DEFAULT_SPIKE_CHECK);
        if !(Duration::from_secs(1)..=HOUR).contains(&spike_check) {
            self.problems.push("alerts.spike_check: must be from 1s to 1h".to_owned());
        }
        let probing_refusals = raw.probing_refusals.unwrap_or(DEFAULT_PROBING_REFUSALS);
        if probing_refusals == 0 {
            self.problems.push("alerts.probing_refusals: must be at least 1".to_owned());
        }
        Some(AlertSettings {
            webhook: webhook?,
            spike_factor,
            spike_min_calls: raw.spike_min_calls.unwrap_or(DEFAULT_SPIKE_MIN_CALLS),
            spike_check,
            probing_refusals,
        })
    }

    /// The webhook's URL from the environment: https, or http on loopback
    /// (a local receiver); never a literal in the file, never in a message.
    fn webhook(&mut self, raw: RawParam) -> Option<Webhook> {
        let RawParam::Env { env: var } = raw else {
            self.problems.push(
                "alerts.webhook: must reference an environment variable, e.g. { env = \"TOKENRELAY_ALERT_WEBHOOK\" }, never a literal URL"
                    .to_owned(),
            );
            return None;
        };
        let Some(value) = self.env.get(&var) else {
            self.missing.push(MissingVar { name: var, used_by: "alerts.webhook".to_owned() });
            return None;
        };
        let loopback = |u: &Url| match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match Url::parse(value) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && loopback(&u)) => {
                Some(Webhook { url: SecretString::from(value.to_owned()), var })
            }
            // The value is a secret: the message names the variable only.
            _ => {
                self.problems.push(format!("alerts.webhook: ${var} must be an https URL (http only on localhost)"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};
    use crate::error::Error;

    const UPSTREAM: &str = r#"
[upstreams.api]
base_url = "https://api.example.com"
token = { type = "static", key = { env = "API_KEY" } }
"#;

    fn parse(alerts: &str, hook: Option<&str>) -> Result<Config, Error> {
        let mut pairs = vec![("API_KEY", "k")];
        pairs.extend(hook.map(|h| ("HOOK", h)));
        Config::parse(&format!("{alerts}\n{UPSTREAM}"), "t.toml", &Env::from_pairs(pairs))
    }

    #[test]
    fn the_webhook_comes_from_the_environment_and_stays_out_of_debug_and_errors() {
        let secret = "https://hooks.slack.com/services/T000/B000/s3cr3t";
        let config = parse("[alerts]\nwebhook = { env = \"HOOK\" }", Some(secret)).unwrap();
        let alerts = config.alerts.as_ref().expect("alerts configured");
        assert_eq!(alerts.webhook.expose(), secret);
        assert_eq!((alerts.spike_factor, alerts.spike_min_calls, alerts.probing_refusals), (3.0, 100, 50));
        assert!(!format!("{config:?}").contains("s3cr3t"), "Debug redacts the webhook");

        let refused = parse("[alerts]\nwebhook = { env = \"HOOK\" }", Some("http://hooks.example/s3cr3t")).unwrap_err();
        assert!(refused.to_string().contains("$HOOK must be an https URL"), "{refused}");
        assert!(!refused.to_string().contains("s3cr3t"), "{refused}");
        let missing = parse("[alerts]\nwebhook = { env = \"HOOK\" }", None).unwrap_err();
        assert_eq!(missing.code(), "missing_env");
        let literal = parse("[alerts]\nwebhook = \"https://hooks.example/x\"", None).unwrap_err();
        assert!(literal.to_string().contains("never a literal URL"), "{literal}");
        assert!(parse("", None).unwrap().alerts.is_none(), "no [alerts], no alerts");
    }

    #[test]
    fn thresholds_are_checked() {
        let err = parse(
            "[alerts]\nwebhook = { env = \"HOOK\" }\nspike_factor = 0.5\nprobing_refusals = 0",
            Some("http://127.0.0.1:9/hook"),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("alerts.spike_factor") && text.contains("alerts.probing_refusals"), "{text}");
    }
}

//! A cached token with its schedule, and its sealed form in the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::secrets::SecretRecord;
use crate::config::CacheSettings;
use crate::token::Token;

/// A token plus when to stop serving it and when to start refreshing it.
#[derive(Clone, Debug)]
pub(crate) struct CachedToken {
    pub(crate) token: Token,
    /// Never served at or after this point (expiry minus the safety margin).
    pub(crate) valid_until: SystemTime,
    /// Refreshed in the background from this point on.
    pub(crate) refresh_at: SystemTime,
    /// When the token was minted, so every instance derives the same schedule.
    fetched_at: SystemTime,
    /// Which secret minted it and when each was last accepted.
    pub(crate) secrets: SecretRecord,
}

/// What is sealed into the store.
#[derive(Serialize, Deserialize)]
struct Stored {
    token: String,
    fetched_at_ms: u64,
    expires_at_ms: u64,
    /// Absent in values stored before secrets were recorded (read as unknown).
    #[serde(default, flatten)]
    secrets: SecretRecord,
}

impl CachedToken {
    /// Schedules a freshly fetched token. The safety margin is capped at half
    /// the lifetime and the refresh window at half of what remains, so short
    /// tokens are still served for a while.
    pub(crate) fn new(token: Token, fetched_at: SystemTime, cache: &CacheSettings) -> Self {
        let expires_at = token.expires_at().unwrap_or(fetched_at);
        let lifetime = expires_at.duration_since(fetched_at).unwrap_or_default();
        let valid_until = expires_at - cache.safety_margin.min(lifetime / 2);
        let usable = valid_until.duration_since(fetched_at).unwrap_or_default();
        let refresh_at = valid_until - cache.refresh_window.min(usable / 2);
        Self { token, valid_until, refresh_at, fetched_at, secrets: SecretRecord::default() }
    }

    /// The same entry, recording `secrets`.
    pub(crate) fn with_secrets(mut self, secrets: SecretRecord) -> Self {
        self.secrets = secrets;
        self
    }

    /// Whether it may still be served at `now`.
    pub(crate) fn is_valid(&self, now: SystemTime) -> bool {
        now < self.valid_until
    }

    /// Whether it is valid and not yet due for refresh at `now`.
    pub(crate) fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.refresh_at
    }

    /// How long ago it was minted (zero if the clocks disagree).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fetched_at).unwrap_or_default()
    }

    /// How long the store should keep it: until it stops being valid.
    pub(crate) fn ttl(&self, now: SystemTime) -> Duration {
        self.valid_until.duration_since(now).unwrap_or_default()
    }

    /// Postpones the next refresh attempt (another instance holds the lock).
    pub(crate) fn retry_refresh_after(mut self, now: SystemTime, delay: Duration) -> Self {
        self.refresh_at = (now + delay).min(self.valid_until);
        self
    }

    /// The plaintext to seal.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            token: self.token.expose().to_owned(),
            fetched_at_ms: unix_ms(self.fetched_at),
            expires_at_ms: unix_ms(self.token.expires_at().unwrap_or(self.fetched_at)),
            secrets: self.secrets.clone(),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads an opened value back; `None` when it is not ours.
    pub(crate) fn from_bytes(bytes: &[u8], cache: &CacheSettings) -> Option<Self> {
        let s: Stored = serde_json::from_slice(bytes).ok()?;
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let entry = Self::new(Token::new(s.token, Some(at(s.expires_at_ms))), at(s.fetched_at_ms), cache);
        Some(entry.with_secrets(s.secrets))
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(margin: u64, window: u64) -> CacheSettings {
        CacheSettings {
            safety_margin: Duration::from_secs(margin),
            refresh_window: Duration::from_secs(window),
            lock_lease: Duration::from_secs(1),
            wait_timeout: Duration::from_secs(1),
            failure_cooldown: Duration::from_secs(1),
            min_token_age: Duration::ZERO,
            invalidations_per_hour: 1,
        }
    }

    #[test]
    fn thirty_minute_token_is_served_29_minutes_and_refreshed_after_24() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let e = CachedToken::new(Token::new("t", Some(t0 + Duration::from_secs(1800))), t0, &cache(60, 300));
        assert_eq!(e.valid_until, t0 + Duration::from_secs(1740));
        assert_eq!(e.refresh_at, t0 + Duration::from_secs(1440));
        assert!(!e.is_valid(t0 + Duration::from_secs(1740)));
    }

    #[test]
    fn short_tokens_keep_half_their_life_usable() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let e = CachedToken::new(Token::new("t", Some(t0 + Duration::from_secs(4))), t0, &cache(60, 300));
        assert_eq!(e.valid_until, t0 + Duration::from_secs(2));
        assert_eq!(e.refresh_at, t0 + Duration::from_secs(1));
    }

    #[test]
    fn stored_form_round_trips_to_the_same_schedule() {
        let c = cache(60, 300);
        let now = SystemTime::now();
        let e = CachedToken::new(Token::new("tok", Some(now + Duration::from_secs(1800))), now, &c);
        let back = CachedToken::from_bytes(&e.to_bytes(), &c).unwrap();
        assert_eq!(back.token.expose(), "tok");
        assert_eq!(back.secrets, SecretRecord::default(), "nothing recorded, nothing read");
        let old = br#"{"token":"tok","fetched_at_ms":1,"expires_at_ms":2}"#;
        assert!(CachedToken::from_bytes(old, &c).is_some(), "values stored before secrets were recorded still read");
        let diff = |a: SystemTime, b: SystemTime| a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap();
        assert!(diff(back.valid_until, e.valid_until) < Duration::from_millis(2));
        assert!(diff(back.refresh_at, e.refresh_at) < Duration::from_millis(2));
    }
}

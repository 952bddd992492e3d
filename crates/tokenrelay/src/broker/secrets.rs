//! Which secret minted a token, and when each was last accepted: recorded
//! in the token's stored value (no key or store call of its own), read by
//! `tokenrelay status` so the operator knows when the previous secret may be
//! revoked (see the README's rotation procedure).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{KeyNamer, secret_tag};
use crate::token::{MintedWith, Secret, Source};

/// The tags (keyed hashes, [`secret_tag`]) of an upstream's configured secrets.
pub(super) struct SecretTags {
    current: Option<String>,
    previous: Option<String>,
}

/// What a stored token says of the secrets, by tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    /// The tag of the secret that minted the token; `None` when stored by a
    /// version that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) minted_with: Option<String>,
    /// When each configured secret last minted a token, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) accepted_ms: BTreeMap<String, u64>,
    /// Whether the endpoint refused the current secret before the previous
    /// one minted the token (rather than the token predating the deploy
    /// that made its secret the previous one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) current_refused: bool,
}

/// When each of the configured secrets was last accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SecretUse {
    pub(crate) minted_with: MintedWith,
    /// The endpoint refused the current secret when this token was minted.
    pub(crate) current_refused: bool,
    pub(crate) current_accepted: Option<SystemTime>,
    /// `None` also when no previous secret is configured.
    pub(crate) previous_accepted: Option<SystemTime>,
}

impl SecretTags {
    pub(super) fn new(namer: &KeyNamer, upstream: &str, source: &Source) -> Self {
        let tag = |which| source.secret_value(which).map(|value| secret_tag(namer, upstream, &value));
        SecretTags { current: tag(Secret::Current), previous: tag(Secret::Previous) }
    }

    fn tag(&self, minted: MintedWith) -> Option<&String> {
        match minted {
            MintedWith::Current => self.current.as_ref(),
            MintedWith::Previous => self.previous.as_ref(),
            MintedWith::Other => None,
        }
    }

    /// Which configured secret `tag` names.
    pub(super) fn label(&self, tag: Option<&str>) -> MintedWith {
        match tag {
            Some(t) if self.current.as_deref() == Some(t) => MintedWith::Current,
            Some(t) if self.previous.as_deref() == Some(t) => MintedWith::Previous,
            _ => MintedWith::Other,
        }
    }

    /// The record of a token minted with `minted` at `at`: `prior`'s times
    /// for the secrets still configured, and this one's.
    pub(super) fn record(&self, minted: MintedWith, at: SystemTime, prior: Option<&SecretRecord>) -> SecretRecord {
        let configured = |t: &String| self.current.as_ref() == Some(t) || self.previous.as_ref() == Some(t);
        let mut accepted_ms: BTreeMap<String, u64> = prior
            .map(|p| p.accepted_ms.iter().filter(|(t, _)| configured(t)).map(|(t, ms)| (t.clone(), *ms)).collect())
            .unwrap_or_default();
        let tag = self.tag(minted).cloned();
        if let Some(t) = &tag {
            accepted_ms.insert(t.clone(), unix_ms(at));
        }
        // Only a refusal of the current secret makes a fetch send the previous one.
        SecretRecord { minted_with: tag, accepted_ms, current_refused: minted == MintedWith::Previous }
    }

    /// What `record` says of this config's secrets.
    pub(super) fn read(&self, record: &SecretRecord) -> SecretUse {
        let at = |tag: Option<&String>| {
            tag.and_then(|t| record.accepted_ms.get(t)).map(|ms| UNIX_EPOCH + Duration::from_millis(*ms))
        };
        SecretUse {
            minted_with: self.label(record.minted_with.as_deref()),
            current_refused: record.current_refused,
            current_accepted: at(self.current.as_ref()),
            previous_accepted: at(self.previous.as_ref()),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(current: &str, previous: Option<&str>) -> SecretTags {
        SecretTags { current: Some(current.to_owned()), previous: previous.map(str::to_owned) }
    }

    #[test]
    fn a_record_keeps_the_times_of_configured_secrets_only() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let before = tags("old", None).record(MintedWith::Current, t0, None);
        // The deploy of a rotation: the old secret is now the previous one.
        let rotating = tags("new", Some("old"));
        let seen = rotating.read(&before);
        assert_eq!((seen.minted_with, seen.current_refused), (MintedWith::Previous, false), "minted before the deploy");
        assert!(rotating.read(&rotating.record(MintedWith::Previous, t0, None)).current_refused);
        let t1 = t0 + Duration::from_secs(60);
        let after = rotating.record(MintedWith::Current, t1, Some(&before));
        let seen = rotating.read(&after);
        assert_eq!(seen.minted_with, MintedWith::Current);
        assert_eq!((seen.current_accepted, seen.previous_accepted), (Some(t1), Some(t0)));
        // The previous secret removed: its time goes with it.
        let done = tags("new", None).record(MintedWith::Current, t1, Some(&after));
        assert_eq!(done.accepted_ms.len(), 1);
        assert_eq!(tags("other", None).read(&done).minted_with, MintedWith::Other);
    }
}

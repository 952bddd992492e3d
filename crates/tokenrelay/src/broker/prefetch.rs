//! Tokens that must outlive a known span of work, such as a static site build.

use std::time::{Duration, SystemTime};

use super::Broker;
use crate::error::{Error, Result};
use crate::token::Token;

impl Broker {
    /// A token for `upstream` that stays valid for at least `min` more.
    ///
    /// A build copies the token into its environment once and cannot rotate
    /// it midway, so a token that is valid now but expires within `min` is
    /// invalidated (in memory, and in the shared store while it still holds
    /// that token) and a new one is fetched. Fails with `token_unavailable`
    /// when even a new token does not last `min`: the endpoint's tokens are
    /// shorter than what the caller needs.
    ///
    /// ```no_run
    /// # async fn demo(broker: tokenrelay::Broker) -> Result<(), tokenrelay::Error> {
    /// let token = broker.token_valid_for("getty", std::time::Duration::from_secs(15 * 60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn token_valid_for(&self, upstream: &str, min: Duration) -> Result<Token> {
        let token = self.token(upstream).await?;
        if lasts(&token, min) {
            return Ok(token);
        }
        self.discard(upstream, &token).await?;
        let fresh = self.token(upstream).await?;
        if lasts(&fresh, min) {
            return Ok(fresh);
        }
        Err(Error::TokenUnavailable {
            upstream: upstream.to_owned(),
            reason: format!(
                "a new token is valid for {}, less than the required {}: ask for a shorter minimum validity",
                humantime::format_duration(nearest_second(remaining(&fresh))),
                humantime::format_duration(min)
            ),
        })
    }
}

/// How long `token` stays valid from now (forever for static keys).
fn remaining(token: &Token) -> Duration {
    token.expires_at().map_or(Duration::MAX, |at| at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn lasts(token: &Token, min: Duration) -> bool {
    remaining(token) >= min
}

fn nearest_second(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_millis() >= 500))
}

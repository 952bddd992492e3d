//! A JWKS shared by every instance (`relay::caller`), sealed, so that only
//! this site's instances can have written it.

use super::{KeyNamer, PREFIX};

/// Where the key set fetched from `jwks_url` is shared.
pub(crate) fn key(namer: &KeyNamer, jwks_url: &str) -> String {
    format!("{PREFIX}:jwks:{}", namer.hash(jwks_url))
}

//! A login's JWT (RFC 7519), checked against its issuer's JWKS (RFC 7517)
//! with `jsonwebtoken`: signature, `iss`, `aud`, `exp` and `nbf`.
//!
//! Only RS256, ES256 (P-256) and EdDSA (Ed25519) are accepted, and only with
//! a key of the matching type (RFC 8725 §3.1: the key, not the token, says
//! which algorithm is valid): `alg=none` and HMAC algorithms never verify.
//!
//! The JWKS is fetched on the request that needs it (no background refresh:
//! see `relay::chores`), once per process at a time (single flight), kept
//! in memory and shared through the store for [`MAX_AGE`], so a cold
//! instance reads it there instead of asking the issuer. A token whose `kid`
//! is unknown refetches it from the issuer (which rotated its keys), at most
//! once per [`REFETCH_FLOOR`] and process, so tokens with made-up `kid`s
//! cannot make the relay hammer the issuer. A set older than [`MAX_AGE`] in
//! memory is read again (from the store, else the issuer), so a key the
//! issuer withdrew stops verifying within twice that.

#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use url::Url;

use crate::capped::{self, Unread};
use crate::store::keys::jwks;
use crate::store::{Read, Store, Write};

/// Clock skew tolerated on `exp` and `nbf`: the issuer's clock and ours may
/// differ by this much.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Least time between two JWKS fetches for an unknown `kid`.
pub(super) const REFETCH_FLOOR: Duration = Duration::from_secs(30);
/// How long a key set is used, in memory and in the store, before it is
/// read again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(600);
/// Longest a JWKS fetch may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS accepted, enforced while it is read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The algorithms a login's token may be signed with.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Why a token was refused, for the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Malformed,
    Algorithm,
    UnknownKey,
    KeyMismatch,
    Invalid,
    JwksUnavailable,
}

impl Refusal {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "jwt_malformed",
            Refusal::Algorithm => "jwt_algorithm_refused",
            Refusal::UnknownKey => "jwt_unknown_kid",
            Refusal::KeyMismatch => "jwt_key_mismatch",
            Refusal::Invalid => "jwt_invalid",
            Refusal::JwksUnavailable => "jwks_unavailable",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Keys {
    set: Option<(Arc<JwkSet>, Instant)>,
    asked: Option<Instant>,
}

impl Keys {
    /// The set, unless it is older than [`MAX_AGE`].
    fn current(&self) -> Option<&JwkSet> {
        self.set.as_ref().filter(|(_, since)| since.elapsed() < MAX_AGE).map(|(set, _)| &**set)
    }
}

/// The claims the relay reads; the rest are checked by `jsonwebtoken`.
#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

/// The JWKS of every issuer the relay's routes name, by URL.
#[derive(Debug, Default)]
pub(super) struct Jwks {
    sets: Mutex<HashMap<Url, Arc<Issuer>>>,
}

#[derive(Debug, Default)]
struct Issuer {
    /// The keys in use and since when, and when the issuer was last asked
    /// (also a failed fetch: an issuer that is down is asked once per floor).
    keys: Mutex<Keys>,
    /// Held by the one request of this process that fetches.
    flight: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// The subject of `token` if it is valid for `issuer` and `audience`.
    pub(super) async fn verify(
        &self,
        http: &reqwest::Client,
        store: &Store,
        jwks_url: &Url,
        issuer: &str,
        audience: &str,
        token: &str,
    ) -> Result<String, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Refusal::Algorithm);
        }
        let entry = self.issuer(jwks_url);
        let jwk = entry.key(http, store, jwks_url, header.kid.as_deref()).await?;
        if !key_fits(&jwk, header.alg) {
            return Err(Refusal::KeyMismatch);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Refusal::KeyMismatch)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|_| Refusal::Invalid)?;
        Ok(data.claims.sub)
    }

    fn issuer(&self, url: &Url) -> Arc<Issuer> {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        sets.entry(url.clone()).or_default().clone()
    }
}

impl Issuer {
    /// The key named `kid` (or the only key, for a token without one): from
    /// memory, else from the store's shared set, else fetched from the issuer
    /// when the floor allows (and then shared).
    async fn key(&self, http: &reqwest::Client, store: &Store, url: &Url, kid: Option<&str>) -> Result<Jwk, Refusal> {
        if let Some(jwk) = self.keys().current().and_then(|set| find(set, kid)) {
            return Ok(jwk);
        }
        let _flight = self.flight.lock().await;
        // Whoever held the flight may have found what this request needs.
        let keys = self.keys();
        if let Some(jwk) = keys.current().and_then(|set| find(set, kid)) {
            return Ok(jwk);
        }
        let store_key = jwks::key(store.namer(), url.as_str());
        if keys.current().is_none()
            && let Some(set) = shared(store, &store_key).await
        {
            let found = find(&set, kid);
            self.use_set(set);
            if let Some(jwk) = found {
                return Ok(jwk);
            }
        }
        if keys.asked.is_some_and(|t| t.elapsed() < REFETCH_FLOOR) {
            return Err(if self.keys().set.is_some() { Refusal::UnknownKey } else { Refusal::JwksUnavailable });
        }
        self.lock().asked = Some(Instant::now());
        let set = fetch(http, url).await.map_err(|why| {
            tracing::warn!(jwks_url = %url, why, "JWKS fetch failed");
            Refusal::JwksUnavailable
        })?;
        if let Ok(json) = serde_json::to_vec(&set)
            && let Err(e) = store.put(&store_key, Write::Sealed(&json), MAX_AGE).await
        {
            tracing::warn!(jwks_url = %url, error = %e, "could not share the JWKS through the store");
        }
        let found = find(&set, kid);
        self.use_set(set);
        found.ok_or(Refusal::UnknownKey)
    }

    fn use_set(&self, set: JwkSet) {
        self.lock().set = Some((Arc::new(set), Instant::now()));
    }

    fn keys(&self) -> Keys {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The set another instance shared under `key`, if any (a store that cannot
/// be read is no reason to refuse: the issuer is asked instead).
async fn shared(store: &Store, key: &str) -> Option<JwkSet> {
    match store.get(&[Read::sealed(key)]).await.map(|mut v| v.opened().map(|o| o.plain)) {
        Ok(json) => json.and_then(|json| serde_json::from_slice(&json).ok()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the shared JWKS");
            None
        }
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None => match set.keys.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        },
    }
}

/// Whether `jwk` is a key for `alg`: its type and curve, and its own `alg` if it states one.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let stated = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(_) => false,
    };
    let typed = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    stated && typed
}

/// The key set at `url`; keys of types the relay does not use are skipped.
async fn fetch(http: &reqwest::Client, url: &Url) -> Result<JwkSet, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let response = http.get(url.clone()).timeout(JWKS_TIMEOUT).send().await.map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let bytes = capped::read(response, MAX_JWKS_BYTES).await.map_err(|e| match e {
        Unread::TooLarge => "JWKS too large".to_owned(),
        Unread::Transport(e) => e.without_url().to_string(),
    })?;
    let raw: RawSet = serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys = raw.keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect();
    Ok(JwkSet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: serde_json::Value) -> Jwk {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn keys_fit_only_their_own_algorithm() {
        let rsa = jwk(serde_json::json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" }));
        let ec = jwk(serde_json::json!({ "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA" }));
        let ed = jwk(serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": "AA" }));
        let rsa_hs = jwk(serde_json::json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS512" }));
        assert!(key_fits(&rsa, Algorithm::RS256) && key_fits(&ec, Algorithm::ES256) && key_fits(&ed, Algorithm::EdDSA));
        assert!(
            !key_fits(&rsa, Algorithm::ES256) && !key_fits(&ec, Algorithm::RS256) && !key_fits(&ed, Algorithm::ES256)
        );
        assert!(!key_fits(&rsa_hs, Algorithm::RS256), "the key's own alg wins");
        assert!(!key_fits(&rsa, Algorithm::HS256));
    }

    /// A JWKS endpoint on loopback answering `body` to every request, counting them.
    async fn jwks_server(body: &'static str) -> (Url, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap()).parse().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                // Slow enough that concurrent requests overlap the fetch.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, hits)
    }

    /// `{"alg":"RS256","kid":<kid>}` over empty claims, unsigned: enough to
    /// reach the key lookup.
    fn token_with_kid(kid: &str) -> String {
        use base64::Engine as _;
        let header = serde_json::json!({ "alg": "RS256", "kid": kid }).to_string();
        format!("{}.e30.c2ln", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header))
    }

    const ONE_KEY: &str = r#"{"keys":[{"kty":"RSA","kid":"known","n":"AQAB","e":"AQAB"}]}"#;

    /// A local store in `dir`, as each instance of one machine opens it.
    fn store(dir: &std::path::Path) -> Store {
        let env = crate::config::Env::from_pairs([(crate::store::LOCAL_STORE_VAR, dir.to_str().unwrap())]);
        let settings = crate::config::StoreSettings { allow_unencrypted: false, timeout: Duration::from_secs(2) };
        Store::from_env(&env, &settings, reqwest::Client::new(), std::path::Path::new("t.toml")).unwrap()
    }

    #[tokio::test]
    async fn unknown_kids_fetch_the_jwks_once_per_floor() {
        let (url, hits) = jwks_server(ONE_KEY).await;
        let dir = tempfile::tempdir().unwrap();
        let (jwks, http, store) = (Jwks::default(), reqwest::Client::new(), store(dir.path()));
        let verify = |kid: &'static str| {
            let (jwks, http, url, store) = (&jwks, &http, &url, &store);
            async move { jwks.verify(http, store, url, "i", "a", &token_with_kid(kid)).await }
        };
        let (a, b, c) = tokio::join!(verify("stray-1"), verify("stray-2"), verify("stray-3"));
        for refused in [a, b, c] {
            assert_eq!(refused.unwrap_err(), Refusal::UnknownKey);
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "single flight");
        assert_eq!(verify("stray-4").await.unwrap_err(), Refusal::UnknownKey);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "no refetch within the floor");
        // The known key is found (its signature then fails), from memory.
        assert_eq!(verify("known").await.unwrap_err(), Refusal::Invalid);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cold_instance_takes_the_jwks_another_instance_shared() {
        let (url, hits) = jwks_server(ONE_KEY).await;
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let token = token_with_kid("known");
        for instance in 0..3 {
            let (jwks, store) = (Jwks::default(), store(dir.path()));
            // The key is found (its signature then fails), wherever it came from.
            assert_eq!(jwks.verify(&http, &store, &url, "i", "a", &token).await.unwrap_err(), Refusal::Invalid);
            assert_eq!(
                hits.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "instance {instance}: the issuer is asked once"
            );
        }
        // A kid the shared set lacks (the issuer rotated) still reaches the issuer.
        let (jwks, store) = (Jwks::default(), store(dir.path()));
        assert_eq!(
            jwks.verify(&http, &store, &url, "i", "a", &token_with_kid("new")).await.unwrap_err(),
            Refusal::UnknownKey
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn alg_none_is_malformed_or_refused_before_any_fetch() {
        // {"alg":"none","typ":"JWT"}.{"sub":"x"}.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        let jwks = Jwks::default();
        let http = reqwest::Client::new();
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let url: Url = "http://127.0.0.1:9/jwks".parse().unwrap();
        let refused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(jwks.verify(&http, &store, &url, "i", "a", token))
            .unwrap_err();
        assert!(matches!(refused, Refusal::Malformed | Refusal::Algorithm), "{refused:?}");
    }
}

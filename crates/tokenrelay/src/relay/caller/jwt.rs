//! A login's JWT (RFC 7519), checked against its issuer's JWKS (RFC 7517)
//! with `jsonwebtoken`: signature, `iss`, `aud`, `exp` and `nbf`.
//!
//! Only RS256, ES256 (P-256) and EdDSA (Ed25519) are accepted, and only with
//! a key of the matching type (RFC 8725 §3.1: the key, not the token, says
//! which algorithm is valid): `alg=none` and HMAC algorithms never verify.
//!
//! The JWKS is fetched on the request that needs it (no background refresh:
//! see `relay::chores`), once per process at a time (single flight), and
//! kept in memory. A token whose `kid` is unknown refetches it (the issuer
//! rotated its keys), at most once per [`REFETCH_FLOOR`], so tokens with
//! made-up `kid`s cannot make the relay hammer the issuer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use url::Url;

/// Clock skew tolerated on `exp` and `nbf`: the issuer's clock and ours may
/// differ by this much.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Least time between two JWKS fetches for an unknown `kid`.
pub(super) const REFETCH_FLOOR: Duration = Duration::from_secs(30);
/// Longest a JWKS fetch may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS accepted.
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
    /// The keys last fetched, and when the last fetch was tried (also a
    /// failed one: an issuer that is down is asked once per floor).
    keys: Mutex<(Option<Arc<JwkSet>>, Option<Instant>)>,
    /// Held by the one request of this process that fetches.
    flight: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// The subject of `token` if it is valid for `issuer` and `audience`.
    pub(super) async fn verify(
        &self,
        http: &reqwest::Client,
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
        let jwk = entry.key(http, jwks_url, header.kid.as_deref()).await?;
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
    /// The key named `kid` (or the only key, for a token without one),
    /// fetching the set when it is unknown and the floor allows.
    async fn key(&self, http: &reqwest::Client, url: &Url, kid: Option<&str>) -> Result<Jwk, Refusal> {
        if let Some(jwk) = self.cached().0.and_then(|set| find(&set, kid)) {
            return Ok(jwk);
        }
        let _flight = self.flight.lock().await;
        // Whoever held the flight may have fetched what this request needs.
        let (set, tried) = self.cached();
        if let Some(jwk) = set.as_deref().and_then(|set| find(set, kid)) {
            return Ok(jwk);
        }
        if tried.is_some_and(|t| t.elapsed() < REFETCH_FLOOR) {
            return Err(if set.is_some() { Refusal::UnknownKey } else { Refusal::JwksUnavailable });
        }
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).1 = Some(Instant::now());
        let set = fetch(http, url).await.map_err(|why| {
            tracing::warn!(jwks_url = %url, why, "JWKS fetch failed");
            Refusal::JwksUnavailable
        })?;
        let set = Arc::new(set);
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).0 = Some(set.clone());
        find(&set, kid).ok_or(Refusal::UnknownKey)
    }

    fn cached(&self) -> (Option<Arc<JwkSet>>, Option<Instant>) {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).clone()
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
    if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        return Err("JWKS too large".to_owned());
    }
    let bytes = response.bytes().await.map_err(|e| e.without_url().to_string())?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err("JWKS too large".to_owned());
    }
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

    #[tokio::test]
    async fn unknown_kids_fetch_the_jwks_once_per_floor() {
        let (url, hits) = jwks_server(r#"{"keys":[{"kty":"RSA","kid":"known","n":"AQAB","e":"AQAB"}]}"#).await;
        let (jwks, http) = (Jwks::default(), reqwest::Client::new());
        let verify = |kid: &'static str| {
            let (jwks, http, url) = (&jwks, &http, &url);
            async move { jwks.verify(http, url, "i", "a", &token_with_kid(kid)).await }
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

    #[test]
    fn alg_none_is_malformed_or_refused_before_any_fetch() {
        // {"alg":"none","typ":"JWT"}.{"sub":"x"}.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        let jwks = Jwks::default();
        let http = reqwest::Client::new();
        let url: Url = "http://127.0.0.1:9/jwks".parse().unwrap();
        let refused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(jwks.verify(&http, &url, "i", "a", token))
            .unwrap_err();
        assert!(matches!(refused, Refusal::Malformed | Refusal::Algorithm), "{refused:?}");
    }
}

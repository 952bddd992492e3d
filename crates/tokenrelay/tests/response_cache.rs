//! The response cache through the relay's real interface, with two relays
//! (two instances) on one store, on both backends: Redis behind the Upstash
//! REST protocol, and the local file store. What the platform e2e suites
//! cannot do cheaply is checked here: an upstream that stops answering at all.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Rig, TEST_TIME, bounded};
use http_body_util::{BodyExt, Full};
use testkit::ApiServer;
use testkit::config::{RouteCache, SiteConfig, route};
use tokenrelay::Env;
use tokenrelay::operator::purge_cache;
use tokenrelay::relay::Relay;

const TTL: Duration = Duration::from_secs(1);
const STALE_IF_ERROR: Duration = Duration::from_secs(2);

struct Answer {
    status: u16,
    cache_status: String,
    body: Bytes,
}

async fn get(relay: &Relay, target: &str) -> Answer {
    let request = http::Request::builder().uri(target).body(Full::new(Bytes::new())).unwrap();
    let response = relay.handle(request).await;
    let status = response.status().as_u16();
    let cache_status =
        response.headers().get("cache-status").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, cache_status, body }
}

/// Entries live 3 s at most (`ttl` + `stale_if_error`).
fn site(rig: &Rig, api: &str) -> SiteConfig {
    rig.site().edit_upstream("api", |u| {
        u.base_url(api).relay(|r| {
            r.route(route("/echo/**").cache(RouteCache::ttl(TTL).stale_if_error(STALE_IF_ERROR)))
                .route(route("/slow").cache(RouteCache::ttl(TTL)))
        })
    })
}

fn config(rig: &Rig, api: &str) -> String {
    site(rig, api).render()
}

fn relay(rig: &Rig, api: &str, env: &Env) -> Relay {
    Relay::new(rig.broker_with(&config(rig, api), env))
}

/// Where the entries are, to look at them raw.
enum Backend<'a> {
    Upstash,
    Local(&'a Path),
}

impl Backend<'_> {
    /// Every stored cache key and value, as the backend holds them.
    async fn cache_entries(&self, rig: &Rig) -> Vec<(String, String)> {
        match self {
            Backend::Upstash => {
                let mut out = Vec::new();
                for key in rig.upstash.redis_keys("tokenrelay:v1:cache:*").await {
                    out.push((key.clone(), rig.upstash.redis_get(&key).await.unwrap_or_default()));
                }
                out
            }
            Backend::Local(dir) => {
                let file: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(dir.join("store.json")).unwrap()).unwrap();
                let entries = file.as_object().unwrap().iter();
                entries
                    .filter(|(k, _)| k.starts_with("tokenrelay:v1:cache:"))
                    .map(|(k, v)| (k.clone(), v["value"].as_str().unwrap().to_owned()))
                    .collect()
            }
        }
    }
}

/// Fills from one instance, stops the API, and reads from another.
async fn outage_is_covered_within_stale_if_error(rig: &Rig, env: &Env, backend: Backend<'_>) {
    let api = ApiServer::start(&rig.tokens).await.unwrap();
    let (a, b) = (relay(rig, &api.url(), env), relay(rig, &api.url(), env));
    let target = "/api/relay/api/echo/outage?q=1";
    let first = get(&a, target).await;
    assert_eq!((first.status, first.cache_status.as_str()), (200, "tokenrelay; fwd=miss; stored"));
    let stored_at = Instant::now();
    let entries = backend.cache_entries(rig).await;
    assert_eq!(entries.len(), 1, "one entry, fill lock released: {entries:?}");
    assert!(entries[0].1.starts_with("v1.") && !entries[0].1.contains("outage"), "sealed: {}", entries[0].1);
    assert!(!entries[0].0.contains("outage"), "the key hides the request");
    let hit = get(&b, target).await;
    assert!(hit.cache_status.starts_with("tokenrelay; hit;"), "{}", hit.cache_status);
    assert_eq!(hit.body, first.body, "the other instance serves the stored answer");
    drop(api);

    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let stale = get(&b, target).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);
    assert!(
        stale.cache_status.starts_with("tokenrelay; fwd=stale; ttl=-")
            && stale.cache_status.ends_with("detail=stale-if-error"),
        "unreachable: no fwd-status: {}",
        stale.cache_status
    );

    tokio::time::sleep((TTL + STALE_IF_ERROR).saturating_sub(stored_at.elapsed()) + Duration::from_millis(100)).await;
    let after = get(&a, target).await;
    assert_eq!(after.status, 502, "past the window the outage shows");
    let code: serde_json::Value = serde_json::from_slice(&after.body).unwrap();
    assert_eq!(code["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn upstream_down_serves_stale_then_a_clean_error_through_upstash() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        outage_is_covered_within_stale_if_error(&rig, &rig.env(), Backend::Upstash).await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn upstream_down_serves_stale_then_a_clean_error_through_the_local_store() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let dir = tempfile_dir();
        let env = rig.env_with(&[
            ("UPSTASH_REDIS_REST_URL", ""),
            ("UPSTASH_REDIS_REST_TOKEN", ""),
            ("TOKENRELAY_LOCAL_STORE", dir.to_str().unwrap()),
        ]);
        outage_is_covered_within_stale_if_error(&rig, &env, Backend::Local(&dir)).await;
        std::fs::remove_dir_all(dir).ok();
        Ok(())
    })
    .await;
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tokenrelay-cache-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A purge made while an answer is on its way covers that answer: an entry's
/// time is when its request was sent, not when its body ended.
#[tokio::test]
async fn a_purge_during_a_fill_covers_the_answer_on_its_way() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let api = ApiServer::start(&rig.tokens).await.unwrap();
        let (a, b) = (relay(&rig, &api.url(), &rig.env()), relay(&rig, &api.url(), &rig.env()));
        let target = "/api/relay/api/slow?ms=400";
        let fill = tokio::spawn(async move { get(&a, target).await });
        let asked = || async { api.requests().iter().any(|r| r.path() == "/v3/slow") };
        testkit::wait_until("the fill's request reached the API", Duration::from_secs(5), asked).await.unwrap();
        let purger = rig.broker_with(&config(&rig, &api.url()), &rig.env());
        purge_cache(&purger, "api", "/slow").await.unwrap();
        let filled = fill.await.unwrap();
        assert_eq!((filled.status, filled.cache_status.as_str()), (200, "tokenrelay; fwd=miss; stored"));
        let after = get(&b, target).await;
        assert!(
            after.cache_status.starts_with("tokenrelay; fwd=miss"),
            "served despite the purge: {}",
            after.cache_status
        );
        Ok(())
    })
    .await;
}

/// The purge record is shared by every deployment of the upstream, whose
/// routes may keep answers far longer than the purger's (3 s here): it lives
/// as long as any entry may.
#[tokio::test]
async fn the_purge_record_outlives_any_entry_whatever_the_purgers_routes() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let purger = rig.broker_with(&config(&rig, "https://api.example.com/v3"), &rig.env());
        purge_cache(&purger, "api", "/echo").await.unwrap();
        let ttl = rig.upstash.redis_pttl("tokenrelay:v1:cache:api:purges").await;
        let sixty_days = 60 * 24 * 3600 * 1000;
        assert!(ttl > sixty_days - 60_000 && ttl <= sixty_days, "the record lives {ttl} ms");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn answers_over_the_cached_body_bound_are_relayed_not_stored() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let api = ApiServer::start(&rig.tokens).await.unwrap();
        let routes = site(&rig, &api.url());
        let bounded_to = |bytes: u64| {
            let config = routes.clone().relay_settings(|r| r.max_cached_body_bytes(bytes)).render();
            Relay::new(rig.broker_with(&config, &rig.env()))
        };
        let small = get(&bounded_to(16), "/api/relay/api/echo/sized").await;
        assert_eq!(
            (small.status, small.cache_status.as_str()),
            (200, "tokenrelay; fwd=miss; detail=size"),
            "relayed, not stored, saying why"
        );
        assert!(small.body.len() > 16);
        assert!(Backend::Upstash.cache_entries(&rig).await.iter().all(|(k, _)| k.ends_with(":purges")));
        let roomy = get(&bounded_to(1 << 20), "/api/relay/api/echo/sized").await;
        assert_eq!(roomy.cache_status, "tokenrelay; fwd=miss; stored");
        Ok(())
    })
    .await;
}

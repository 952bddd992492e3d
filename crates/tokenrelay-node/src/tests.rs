//! The addon's functions as Rust calls, against a real token endpoint and a
//! redis-server behind the Upstash REST protocol (all on loopback). Unit
//! tests, not integration tests: the addon is a `cdylib` alone, which an
//! integration test cannot link (see Cargo.toml).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::check::{CheckOptions, check};
use crate::leak_scan::{ScanOptions, scan_for_leaks};
use crate::prefetch::{PrefetchOptions, prefetch};
use crate::token::{TokenOptions, get_token};
use napi::Either;
use testkit::config::{SiteConfig, Token, UpstreamConfig, env, oauth2};
use testkit::{RedisServer, TokenServer, TokenServerConfig, Upstash, base64_key, bounded};

const CLIENT_ID: &str = "addon-client-2b7d";
const CLIENT_SECRET: &str = "addon-secret-5e1a-do-not-print";
const TEST_TIME: Duration = Duration::from_secs(30);

struct Rig {
    _redis: RedisServer,
    upstash: Upstash,
    tokens: TokenServer,
    key: String,
    site: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let redis = RedisServer::start().await.unwrap();
        let upstash = Upstash::start(&redis).await.unwrap();
        let tokens = TokenServer::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET)).await.unwrap();
        let key = base64_key();
        let site = tempfile::tempdir().unwrap();
        let getty = oauth2(tokens.url(), "GETTY_API_KEY", "GETTY_API_SECRET");
        let config = SiteConfig::new()
            .upstream(UpstreamConfig::new("getty", "https://api.example.com/v3", getty))
            .upstream(UpstreamConfig::new("maps-v2", "https://maps.example.com", Token::Static(env("MAPS_KEY"))));
        config.write(&site.path().join("tokenrelay.toml")).unwrap();
        Rig { _redis: redis, upstash, tokens, key, site }
    }

    fn dir(&self) -> String {
        self.site.path().to_string_lossy().into_owned()
    }

    /// The site's whole environment ("" unsets what the machine may have set).
    fn env(&self) -> HashMap<String, String> {
        [
            ("GETTY_API_KEY", CLIENT_ID.to_owned()),
            ("GETTY_API_SECRET", CLIENT_SECRET.to_owned()),
            ("MAPS_KEY", "maps-static-key-31c9".to_owned()),
            ("UPSTASH_REDIS_REST_URL", self.upstash.url()),
            ("UPSTASH_REDIS_REST_TOKEN", self.upstash.token().to_owned()),
            ("TOKENRELAY_ENCRYPTION_KEY", self.key.clone()),
            ("TOKENRELAY_LOCAL_STORE", self.site.path().join(".store").to_string_lossy().into_owned()),
            ("TOKENRELAY_CONFIG", String::new()),
            ("KV_REST_API_URL", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn options(&self) -> PrefetchOptions {
        PrefetchOptions { cwd: Some(self.dir()), env: Some(self.env()), ..PrefetchOptions::default() }
    }
}

#[tokio::test]
async fn every_upstream_is_prefetched_and_handed_back_under_its_default_variable() {
    bounded(TEST_TIME, async {
        let rig = Rig::start().await;
        let report = prefetch(rig.options()).await.unwrap();
        let vars: Vec<(&str, Option<&str>, &str)> =
            report.tokens.iter().map(|t| (t.upstream.as_str(), t.env_var.as_deref(), t.outcome.as_str())).collect();
        assert_eq!(
            vars,
            [
                ("getty", Some("TOKENRELAY_GETTY_TOKEN"), "fetched"),
                ("maps-v2", Some("TOKENRELAY_MAPS_V2_TOKEN"), "static")
            ]
        );
        assert!(rig.tokens.is_valid(&report.env["TOKENRELAY_GETTY_TOKEN"]));
        assert_eq!(report.env["TOKENRELAY_MAPS_V2_TOKEN"], "maps-static-key-31c9");
        assert_eq!((report.tokens[1].expires_at.as_deref(), report.tokens[1].expires_in_seconds), (None, None));
        assert!(report.shared_store);
        assert_eq!(rig.upstash.redis_keys("tokenrelay:v1:getty:*").await.len(), 1, "the store is warm");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn only_the_chosen_upstreams_are_fetched_and_only_the_asked_tokens_returned() {
    bounded(TEST_TIME, async {
        let rig = Rig::start().await;
        let options =
            PrefetchOptions { upstreams: Some(vec!["getty".into()]), env_vars: Some(HashMap::new()), ..rig.options() };
        let report = prefetch(options).await.unwrap();
        assert_eq!(report.tokens.len(), 1);
        assert!(report.env.is_empty());
        assert_eq!(rig.tokens.calls(), 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_token_variable_may_not_shadow_a_credential_or_another_token() {
    bounded(TEST_TIME, async {
        let rig = Rig::start().await;
        let with_vars = |pairs: &[(&str, &str)]| PrefetchOptions {
            env_vars: Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            ..rig.options()
        };
        let err = prefetch(with_vars(&[("getty", "MAPS_KEY")])).await.unwrap_err();
        assert_eq!(err.code(), "invalid_options");
        assert_eq!(
            err.message(),
            "option envVars.getty: MAPS_KEY is taken by a credential of upstream \"maps-v2\"; choose another name for the token"
        );
        let err = prefetch(with_vars(&[("getty", "SAME"), ("maps-v2", "SAME")])).await.unwrap_err();
        assert_eq!(
            err.message(),
            "option envVars.maps-v2: SAME is also the variable of upstream \"getty\"; give each token its own"
        );
        assert_eq!(rig.tokens.calls(), 0, "options are checked before any fetch");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_build_margin_is_checked_before_the_site_is_read() {
    bounded(TEST_TIME, async {
        let options = PrefetchOptions {
            cwd: Some("/nonexistent-site".into()),
            build_margin: Some(Either::A("a while".into())),
            ..PrefetchOptions::default()
        };
        let err = prefetch(options).await.unwrap_err();
        assert_eq!(err.code(), "invalid_options");
        assert!(err.message().starts_with("option buildMargin: \"a while\""), "{}", err.message());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn get_token_shares_the_prefetched_token_and_check_shows_no_secret() {
    bounded(TEST_TIME, async {
        let rig = Rig::start().await;
        let report = prefetch(rig.options()).await.unwrap();
        let options = TokenOptions { cwd: Some(rig.dir()), env: Some(rig.env()), ..TokenOptions::default() };
        let token = get_token("getty".into(), options).await.unwrap();
        assert_eq!(token, report.env["TOKENRELAY_GETTY_TOKEN"]);
        assert_eq!(rig.tokens.calls(), 1);

        let summary =
            check(CheckOptions { cwd: Some(rig.dir()), env: Some(rig.env()), ..CheckOptions::default() }).unwrap();
        let shown = format!("{summary:?}");
        for secret in [CLIENT_SECRET, "maps-static-key-31c9", rig.upstash.token(), &rig.key, &token] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("$GETTY_API_SECRET (redacted)"), "{shown}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_scan_finds_the_prefetched_token_in_the_output_by_its_variable() {
    bounded(TEST_TIME, async {
        let rig = Rig::start().await;
        let report = prefetch(rig.options()).await.unwrap();
        let out = rig.site.path().join("public");
        write(&out.join("index.html"), "<h1>fine</h1>");
        write(&out.join("js/page.js"), &format!("let t = {:?};", report.env["TOKENRELAY_GETTY_TOKEN"]));

        let mut env = rig.env();
        env.extend(report.env.clone());
        let options = ScanOptions {
            cwd: Some(rig.dir()),
            env: Some(env),
            token_vars: Some(vec!["TOKENRELAY_GETTY_TOKEN".into()]),
            ..ScanOptions::default()
        };
        let scan = scan_for_leaks("public".into(), options).await.unwrap();
        let found: Vec<(&str, Option<&str>)> =
            scan.leaks.iter().map(|l| (l.file.as_str(), l.variable.as_deref())).collect();
        assert_eq!(found, [("js/page.js", Some("TOKENRELAY_GETTY_TOKEN"))]);
        assert_eq!(scan.leaks[0].secret, "the token in $TOKENRELAY_GETTY_TOKEN");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_scan_finds_every_token_get_token_handed_out_even_after_a_refresh() {
    bounded(TEST_TIME, async {
        let rig = Rig::start().await;
        // Off the shared store, each call with its own local store: the
        // second call finds no token and fetches a new one, as a build does
        // when its token is replaced mid-build.
        let get = |store: &str| {
            let mut env = rig.env();
            env.insert("UPSTASH_REDIS_REST_URL".into(), String::new());
            env.insert("TOKENRELAY_LOCAL_STORE".into(), rig.site.path().join(store).to_string_lossy().into_owned());
            get_token("getty".into(), TokenOptions { cwd: Some(rig.dir()), env: Some(env), ..TokenOptions::default() })
        };
        let first = get("store-1").await.unwrap();
        let second = get("store-2").await.unwrap();
        assert_ne!(first, second);
        let out = rig.site.path().join("public");
        write(&out.join("a.js"), &format!("let t = {first:?};"));
        write(&out.join("b.js"), &format!("let t = {second:?};"));

        // No token variable named: the scan knows what this process handed out.
        let options = ScanOptions { cwd: Some(rig.dir()), env: Some(rig.env()), ..ScanOptions::default() };
        let scan = scan_for_leaks("public".into(), options).await.unwrap();
        let found: Vec<(&str, &str)> = scan.leaks.iter().map(|l| (l.file.as_str(), l.secret.as_str())).collect();
        let by_get_token = "a token of upstream \"getty\" handed out by getToken";
        assert_eq!(found, [("a.js", by_get_token), ("b.js", by_get_token)]);
        assert!(scan.leaks.iter().all(|l| l.variable.is_none() && l.kind == "token"));
        Ok(())
    })
    .await;
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

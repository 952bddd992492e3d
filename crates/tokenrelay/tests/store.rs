//! The shared store as the broker uses it: tokens sealed and keyed so that no
//! secret and no other deployment's credentials show in Redis, the store chosen
//! from Upstash's or Vercel KV's variables (never unencrypted unless asked), and
//! the local file store shared by processes of one machine.

mod common;

use common::{CLIENT_ID, CLIENT_SECRET, Rig, TEST_TIME, bounded, json_config, token_key};
use testkit::base64_key;
use tokenrelay::{Broker, Config, Provenance};

#[tokio::test]
async fn raw_value_in_redis_is_sealed_and_keyed_without_secrets() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let token = rig.broker().token("api").await.unwrap();
        let key = token_key(&rig).await;
        assert!(key.starts_with("tokenrelay:v1:api:"), "{key}");
        assert!(!key.contains(CLIENT_ID) && !key.contains(CLIENT_SECRET));
        let raw = rig.upstash.redis_get(&key).await.unwrap();
        assert!(raw.starts_with("v1."), "sealed format");
        assert!(!raw.contains(token.expose()));
        // A broker with another encryption key cannot use it and fetches its own.
        let env = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", &base64_key())]);
        let other = rig.broker_with(&rig.config(), &env).token("api").await.unwrap();
        assert_eq!(other.outcome(), Provenance::Fetched);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deployments_with_other_credentials_on_one_store_never_share_a_token() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        // Production and preview: one config, one store, one encryption key,
        // but the same variable names hold other values.
        let production = rig.broker_with(&json_config(&rig), &rig.env());
        assert_eq!(production.token("custom").await.unwrap().outcome(), Provenance::Fetched);
        let preview_env = rig.env_with(&[("API_CLIENT_ID", "preview-client")]);
        let preview = rig.broker_with(&json_config(&rig), &preview_env).token("custom").await;
        assert_eq!(preview.unwrap_err().code(), "token_rejected", "preview asked for its own token");
        assert_eq!(rig.tokens.calls(), 2);

        // Extra parameters are part of what a token is minted for, too.
        let with = |resource: &str| {
            rig.site().edit_upstream("api", |u| u.token(rig.token().extra("resource", resource))).render()
        };
        assert_eq!(
            rig.broker_with(&with("images"), &rig.env()).token("api").await.unwrap().outcome(),
            Provenance::Fetched
        );
        assert_eq!(
            rig.broker_with(&with("videos"), &rig.env()).token("api").await.unwrap().outcome(),
            Provenance::Fetched
        );
        assert_eq!(
            rig.broker_with(&with("images"), &rig.env()).token("api").await.unwrap().outcome(),
            Provenance::Store
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn cache_keys_are_keyed_by_the_encryption_key() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        rig.broker().token("api").await.unwrap();
        let other_key = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", &base64_key())]);
        rig.broker_with(&rig.config(), &other_key).token("api").await.unwrap();
        let tokens: Vec<String> = rig.stored_keys().await.into_iter().filter(|k| !k.ends_with(":lock")).collect();
        assert_eq!(tokens.len(), 2, "same credentials, other key: another name, not a guessable hash: {tokens:?}");

        // Without an encryption key, names are keyed by the Upstash token.
        let plain = rig.site().store(|s| s.allow_unencrypted()).render();
        let unencrypted = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", "")]);
        rig.broker_with(&plain, &unencrypted).token("api").await.unwrap();
        assert_eq!(rig.stored_keys().await.len(), 3);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn remote_store_without_an_encryption_key_is_refused_unless_opted_out() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let env = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", "")]);
        let config = Config::parse(&rig.config(), "tokenrelay.toml", &env).unwrap();
        let err = Broker::new(config, &env).unwrap_err();
        assert_eq!(err.code(), "missing_env");
        assert!(err.to_string().contains("TOKENRELAY_ENCRYPTION_KEY"), "{err}");

        let opted_out = rig.site().store(|s| s.allow_unencrypted()).render();
        let b = rig.broker_with(&opted_out, &env);
        assert!(b.summary().store.contains("unencrypted"));
        b.token("api").await.unwrap();

        let bad = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", "c2hvcnQ=")]);
        let err = Broker::new(Config::parse(&rig.config(), "tokenrelay.toml", &bad).unwrap(), &bad).unwrap_err();
        assert_eq!(err.code(), "invalid_env");
        assert!(
            err.to_string()
                .starts_with("environment variable TOKENRELAY_ENCRYPTION_KEY: must decode to 32 bytes, got 5"),
            "{err}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn vercel_kv_variables_select_the_same_store() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let (url, token) = (rig.upstash.url(), rig.upstash.token().to_owned());
        let env = rig.env_with(&[
            ("UPSTASH_REDIS_REST_URL", ""),
            ("UPSTASH_REDIS_REST_TOKEN", ""),
            ("KV_REST_API_URL", &url),
            ("KV_REST_API_TOKEN", &token),
        ]);
        let b = rig.broker_with(&rig.config(), &env);
        assert!(b.has_remote_store());
        b.token("api").await.unwrap();
        assert!(!rig.stored_keys().await.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn local_store_is_shared_by_separate_brokers_on_this_machine() {
    bounded(TEST_TIME, async {
        let rig = Rig::default().await;
        let dir = std::env::temp_dir().join(format!("tokenrelay-broker-local-{}", fastrand::u64(..)));
        let dir = dir.to_str().unwrap();
        let env = rig.env_with(&[
            ("UPSTASH_REDIS_REST_URL", ""),
            ("TOKENRELAY_ENCRYPTION_KEY", ""),
            ("TOKENRELAY_LOCAL_STORE", dir),
        ]);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let b = rig.broker_with(&rig.config(), &env);
                tokio::spawn(async move { b.token("api").await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(rig.tokens.calls(), 1);
        let file = std::fs::read_to_string(std::path::Path::new(dir).join("store.json")).unwrap();
        let token = rig.tokens.issued().pop().unwrap();
        assert!(!file.contains(&token), "the local store is sealed too");
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    })
    .await;
}

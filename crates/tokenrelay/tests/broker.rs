//! The broker against real parts: a redis-server reached through the Upstash
//! REST protocol, and a real OAuth2 token endpoint that counts its calls.

mod common;

use std::time::{Duration, Instant};

use common::{CLIENT_ID, CLIENT_SECRET, Rig, base64_key, bounded};
use testkit::{Behavior, ExpiresIn, TokenServerConfig};
use tokenrelay::{Broker, Config, Provenance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cold_brokers_racing_on_an_empty_store_fetch_exactly_once() {
    bounded(async {
        let rig = Rig::default().await;
        let brokers: Vec<Broker> = (0..50).map(|_| rig.broker()).collect();
        let tasks: Vec<_> =
            brokers.into_iter().map(|b| tokio::spawn(async move { b.token("api").await.unwrap() })).collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(t.await.unwrap().expose().to_owned());
        }
        assert_eq!(rig.tokens.calls(), 1, "exactly one token request for 50 racing instances");
        assert!(values.iter().all(|v| v == &values[0]), "everyone got the same token");
        assert!(rig.tokens.is_valid(&values[0]));
    })
    .await;
}

#[tokio::test]
async fn warm_instance_makes_zero_store_calls_and_cold_one_makes_one() {
    bounded(async {
        let rig = Rig::default().await;
        let warm = rig.broker();
        assert_eq!(warm.token("api").await.unwrap().outcome(), Provenance::Fetched);
        rig.upstash.reset_counts();
        for _ in 0..100 {
            assert_eq!(warm.token("api").await.unwrap().outcome(), Provenance::Memory);
        }
        assert_eq!(rig.upstash.requests(), 0, "store calls for 100 warm requests");

        let cold = rig.broker();
        assert_eq!(cold.token("api").await.unwrap().outcome(), Provenance::Store);
        assert_eq!(rig.upstash.requests(), 1, "store calls for a cold instance");
        assert_eq!(rig.tokens.calls(), 1);
    })
    .await;
}

#[tokio::test]
async fn crashed_lock_holder_blocks_rotation_only_until_its_lease_expires() {
    bounded(async {
        let rig = Rig::default().await;
        rig.tokens.set_behavior(Behavior::Hang);
        // A holder takes the lock; we learn its key, then the holder's process dies
        // mid-refresh: nothing releases the lock it leaves behind.
        let holder = rig.broker();
        let crashed = tokio::spawn(async move { holder.token("api").await });
        testkit::wait_until("the lock is taken", Duration::from_secs(5), || async {
            rig.stored_keys().await.iter().any(|k| k.ends_with(":lock"))
        })
        .await
        .unwrap();
        let lock = rig.stored_keys().await.into_iter().find(|k| k.ends_with(":lock")).unwrap();
        crashed.abort();
        let mut redis = rig.upstash.redis_client().get_multiplexed_async_connection().await.unwrap();
        let () = redis::cmd("SET")
            .arg(&lock)
            .arg("crashed-owner")
            .arg("PX")
            .arg(2000)
            .query_async(&mut redis)
            .await
            .unwrap();
        let locked_at = Instant::now();
        let calls = rig.tokens.calls();
        rig.tokens.set_behavior(Behavior::Normal);

        let token = rig.broker().token("api").await.unwrap();
        assert!(rig.tokens.is_valid(token.expose()));
        assert!(locked_at.elapsed() >= Duration::from_millis(1500), "waited for the 2 s lease, not less");
        assert_eq!(rig.tokens.calls(), calls + 1, "one fetch resumed rotation");
    })
    .await;
}

#[tokio::test]
async fn cancelled_lock_holder_releases_the_lock_at_once() {
    bounded(async {
        let rig = Rig::default().await;
        rig.tokens.set_behavior(Behavior::Hang);
        let holder = rig.broker();
        let cancelled = tokio::spawn(async move { holder.token("api").await });
        testkit::wait_until("the lock is taken", Duration::from_secs(5), || async {
            rig.stored_keys().await.iter().any(|k| k.ends_with(":lock"))
        })
        .await
        .unwrap();
        // The request holding it goes away, as when a visitor hangs up on a streaming function.
        cancelled.abort();
        testkit::wait_until("the lock is released, well before its 2 s lease", Duration::from_millis(700), || async {
            !rig.stored_keys().await.iter().any(|k| k.ends_with(":lock"))
        })
        .await
        .unwrap();
        rig.tokens.set_behavior(Behavior::Normal);
        let token = rig.broker().token("api").await.unwrap();
        assert!(rig.tokens.is_valid(token.expose()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_ran_out_never_overwrites_the_newer_token() {
    bounded(async {
        let rig = Rig::default().await;
        let config = rig
            .config("")
            .replace("lock_lease = \"2s\"", "lock_lease = \"20s\"")
            .replace("wait_timeout = \"5s\"", "wait_timeout = \"25s\"")
            .replace("timeout = \"300ms\"", "timeout = \"5s\"");
        // The leader takes the lock; the token server holds its fetch.
        let hold = rig.tokens.hold_next();
        let leader = rig.broker_with(&config, &rig.env());
        let leader = tokio::spawn(async move { leader.token("api").await });
        testkit::wait_until("the leader's fetch arrives", Duration::from_secs(5), || async { rig.tokens.calls() == 1 })
            .await
            .unwrap();
        // Its lease runs out (a paused process, a slow network) and another
        // instance takes the lock and stores a newer token.
        let lock = rig.stored_keys().await.into_iter().find(|k| k.ends_with(":lock")).expect("the leader's lock");
        assert!(rig.upstash.redis_pexpire(&lock, 1).await);
        testkit::wait_until("the lease runs out", Duration::from_secs(5), || async {
            rig.upstash.redis_get(&lock).await.is_none()
        })
        .await
        .unwrap();
        let newer = rig.broker_with(&config, &rig.env()).token("api").await.unwrap();
        assert_eq!(newer.outcome(), Provenance::Fetched);

        // The old leader's fetch completes: it may use its token, but never store it.
        hold.release();
        let late = leader.await.unwrap().unwrap();
        assert_ne!(late.expose(), newer.expose());
        let cold = rig.broker_with(&config, &rig.env()).token("api").await.unwrap();
        assert_eq!(
            (cold.expose(), cold.outcome()),
            (newer.expose(), Provenance::Store),
            "the store kept the newer token"
        );
        assert_eq!(rig.tokens.calls(), 2);
    })
    .await;
}

#[tokio::test]
async fn late_401_keeps_the_newer_token_in_the_store() {
    bounded(async {
        let rig = Rig::default().await;
        let (a, b) = (rig.broker(), rig.broker());
        let old = a.token("api").await.unwrap();
        // Instance B sees a 401 first, rotates: the store now holds a newer token.
        b.invalidate("api", &b.token("api").await.unwrap()).await.unwrap();
        let newer = b.token("api").await.unwrap();
        assert_ne!(newer.expose(), old.expose());
        let stored_before = rig.upstash.redis_get(&token_key(&rig).await).await;

        // A's late 401 for the old token must not throw the newer one away.
        a.invalidate("api", &old).await.unwrap();
        assert_eq!(rig.upstash.redis_get(&token_key(&rig).await).await, stored_before);
        let again = a.token("api").await.unwrap();
        assert_eq!(again.expose(), newer.expose());
        assert_eq!(again.outcome(), Provenance::Store);
        assert_eq!(rig.tokens.calls(), 2);
    })
    .await;
}

async fn token_key(rig: &Rig) -> String {
    let keys = rig.stored_keys().await;
    keys.into_iter()
        .find(|k| [":lock", ":failure", ":invalidations"].iter().all(|s| !k.ends_with(s)))
        .expect("a stored token")
}

#[tokio::test]
async fn invalidation_drops_the_rejected_token_from_both_levels() {
    bounded(async {
        let rig = Rig::default().await;
        let b = rig.broker();
        let first = b.token("api").await.unwrap();
        b.invalidate("api", &first).await.unwrap();
        let left = rig.stored_keys().await;
        assert!(left.iter().all(|k| k.ends_with(":invalidations")), "store still holds the token: {left:?}");
        let second = b.token("api").await.unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_eq!(second.outcome(), Provenance::Fetched);
    })
    .await;
}

#[tokio::test]
async fn redis_stopped_mid_run_still_serves_valid_tokens_and_recovers() {
    bounded(async {
        let mut rig = Rig::default().await;
        let warm = rig.broker();
        warm.token("api").await.unwrap();
        rig.redis.stop().await.unwrap();

        assert_eq!(warm.token("api").await.unwrap().outcome(), Provenance::Memory);
        let cold = rig.broker().token("api").await.unwrap();
        assert_eq!(cold.outcome(), Provenance::Direct);
        assert!(rig.tokens.is_valid(cold.expose()));

        rig.redis.restart().await.unwrap();
        testkit::wait_until("the store serves again", Duration::from_secs(10), || async {
            rig.broker().token("api").await.is_ok_and(|t| t.outcome() == Provenance::Fetched)
        })
        .await
        .unwrap();
        assert_eq!(rig.broker().token("api").await.unwrap().outcome(), Provenance::Store, "recovered by itself");
    })
    .await;
}

#[tokio::test]
async fn token_is_refreshed_ahead_of_expiry_without_making_callers_wait() {
    bounded(async {
        // 4 s tokens, 1 s margin: served until 3 s, refreshed from 2 s on.
        let rig = Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).lifetime(Duration::from_secs(4))).await;
        let b = rig.broker_with(&rig.config("safety_margin = \"1s\"\nrefresh_window = \"1s\""), &rig.env());
        let first = b.token("api").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let during = b.token("api").await.unwrap();
        assert_eq!(during.expose(), first.expose(), "the caller is served at once, from memory");
        assert_eq!(during.outcome(), Provenance::Memory);
        testkit::wait_until("background refresh", Duration::from_secs(5), || async { rig.tokens.calls() == 2 })
            .await
            .unwrap();
        testkit::wait_until("new token served", Duration::from_secs(5), || async {
            b.token("api").await.unwrap().expose() != first.expose()
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn raw_value_in_redis_is_sealed_and_keyed_without_secrets() {
    bounded(async {
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
        let other = rig.broker_with(&rig.config(""), &env).token("api").await.unwrap();
        assert_eq!(other.outcome(), Provenance::Fetched);
    })
    .await;
}

#[tokio::test]
async fn deployments_with_other_credentials_on_one_store_never_share_a_token() {
    bounded(async {
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
            rig.config("").replace(
                "timeout = \"300ms\"",
                &format!("timeout = \"300ms\"\nextra = {{ resource = \"{resource}\" }}"),
            )
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
    })
    .await;
}

#[tokio::test]
async fn cache_keys_are_keyed_by_the_encryption_key() {
    bounded(async {
        let rig = Rig::default().await;
        rig.broker().token("api").await.unwrap();
        let other_key = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", &base64_key())]);
        rig.broker_with(&rig.config(""), &other_key).token("api").await.unwrap();
        let tokens: Vec<String> = rig.stored_keys().await.into_iter().filter(|k| !k.ends_with(":lock")).collect();
        assert_eq!(tokens.len(), 2, "same credentials, other key: another name, not a guessable hash: {tokens:?}");

        // Without an encryption key, names are keyed by the Upstash token.
        let plain = rig.config("").replace("[cache]", "[store]\nallow_unencrypted = true\n\n[cache]");
        let unencrypted = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", "")]);
        rig.broker_with(&plain, &unencrypted).token("api").await.unwrap();
        assert_eq!(rig.stored_keys().await.len(), 3);
    })
    .await;
}

#[tokio::test]
async fn remote_store_without_an_encryption_key_is_refused_unless_opted_out() {
    bounded(async {
        let rig = Rig::default().await;
        let env = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", "")]);
        let config = Config::parse(&rig.config(""), "tokenrelay.toml", &env).unwrap();
        let err = Broker::new(config, &env).unwrap_err();
        assert_eq!(err.code(), "missing_env");
        assert!(err.to_string().contains("TOKENRELAY_ENCRYPTION_KEY"), "{err}");

        let opted_out = rig.config("").replace("[cache]", "[store]\nallow_unencrypted = true\n\n[cache]");
        let b = rig.broker_with(&opted_out, &env);
        assert!(b.summary().store.contains("unencrypted"));
        b.token("api").await.unwrap();

        let bad = rig.env_with(&[("TOKENRELAY_ENCRYPTION_KEY", "c2hvcnQ=")]);
        let err = Broker::new(Config::parse(&rig.config(""), "tokenrelay.toml", &bad).unwrap(), &bad).unwrap_err();
        assert_eq!(err.code(), "invalid_env");
        assert!(
            err.to_string()
                .starts_with("environment variable TOKENRELAY_ENCRYPTION_KEY: must decode to 32 bytes, got 5"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn vercel_kv_variables_select_the_same_store() {
    bounded(async {
        let rig = Rig::default().await;
        let (url, token) = (rig.upstash.url(), rig.upstash.token().to_owned());
        let env = rig.env_with(&[
            ("UPSTASH_REDIS_REST_URL", ""),
            ("UPSTASH_REDIS_REST_TOKEN", ""),
            ("KV_REST_API_URL", &url),
            ("KV_REST_API_TOKEN", &token),
        ]);
        let b = rig.broker_with(&rig.config(""), &env);
        assert!(b.has_remote_store());
        b.token("api").await.unwrap();
        assert!(!rig.stored_keys().await.is_empty());
    })
    .await;
}

async fn failure(rig: &Rig, behavior: Behavior) -> tokenrelay::Error {
    rig.tokens.set_behavior(behavior);
    rig.broker().token("api").await.unwrap_err()
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    bounded(async {
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::Status(500)).await;
        assert_eq!(err.code(), "token_unavailable");
        assert_eq!(
            err.to_string(),
            "upstream \"api\": token unavailable: token endpoint failed 3 times, last: HTTP 500 Internal Server Error"
        );
        assert_eq!(rig.tokens.calls(), 3);
    })
    .await;
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    bounded(async {
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::Hang).await;
        assert_eq!(err.code(), "token_unavailable");
        assert!(err.to_string().ends_with("last: timed out after 300ms"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn garbage_and_tokenless_responses_are_invalid_not_retried() {
    bounded(async {
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::Garbage).await;
        assert_eq!(err.code(), "token_response_invalid");
        assert_eq!(
            err.to_string(),
            "upstream \"api\": invalid token response: HTTP 200 OK body is not a JSON token response"
        );
        let rig = Rig::default().await;
        let err = failure(&rig, Behavior::MissingToken).await;
        assert_eq!(err.to_string(), "upstream \"api\": invalid token response: missing \"access_token\"");
        assert_eq!(rig.tokens.calls(), 1);
    })
    .await;
}

#[tokio::test]
async fn tokens_that_arrive_expired_or_with_absurd_expiry_are_invalid_never_served() {
    bounded(async {
        let cases = [
            ("0", "\"expires_in\" says the token has already expired"),
            ("1e300", "\"expires_in\" is out of range"),
            ("1.7e12", "\"expires_in\" is more than 10 years away (milliseconds where seconds are due?)"),
            ("-30", "\"expires_in\" is not a number of seconds"),
        ];
        for (raw, reason) in cases {
            let rig =
                Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).expires_in(ExpiresIn::Raw(raw))).await;
            let err = rig.broker().token("api").await.unwrap_err();
            assert_eq!(err.code(), "token_response_invalid", "expires_in {raw}: {err}");
            assert_eq!(err.to_string(), format!("upstream \"api\": invalid token response: {reason}"));
            assert_eq!(rig.tokens.calls(), 1, "not retried");
            assert!(
                !rig.stored_keys().await.iter().any(|k| !k.ends_with(":failure")),
                "nothing but the failure stored"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn json_expires_at_in_the_past_or_out_of_range_is_invalid_never_a_panic() {
    bounded(async {
        for (raw, reason) in [
            ("1700000000", "/data/expires_at says the token has already expired"),
            ("1e300", "/data/expires_at is out of range"),
            ("\"1999-01-01T00:00:00Z\"", "/data/expires_at says the token has already expired"),
        ] {
            let rig =
                Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).expires_in(ExpiresIn::Raw(raw))).await;
            let err = rig.broker_with(&json_config(&rig), &rig.env()).token("custom").await.unwrap_err();
            assert_eq!(err.code(), "token_response_invalid", "expires_at {raw}: {err}");
            assert_eq!(err.to_string(), format!("upstream \"custom\": invalid token response: {reason}"));
        }
    })
    .await;
}

#[tokio::test]
async fn oauth_errors_and_bad_credentials_are_rejections() {
    bounded(async {
        let rig = Rig::default().await;
        let err = failure(
            &rig,
            Behavior::OAuthError { error: "invalid_scope".into(), description: "scope x is unknown".into() },
        )
        .await;
        assert_eq!(err.code(), "token_rejected");
        assert_eq!(
            err.to_string(),
            "upstream \"api\": token endpoint rejected the request: invalid_scope (scope x is unknown), HTTP 400"
        );

        let rig = Rig::default().await;
        let env = rig.env_with(&[("API_CLIENT_SECRET", "wrong-secret")]);
        let err = rig.broker_with(&rig.config(""), &env).token("api").await.unwrap_err();
        assert_eq!(err.code(), "token_rejected");
        assert!(err.to_string().contains("invalid_client"), "{err}");
        assert!(!err.to_string().contains("wrong-secret"));
        assert_eq!(rig.tokens.calls(), 1, "a rejection is not retried");
    })
    .await;
}

#[tokio::test]
async fn a_failing_endpoint_is_not_hammered_by_this_or_other_instances() {
    bounded(async {
        let rig = Rig::default().await;
        let first = rig.broker();
        rig.tokens.set_behavior(Behavior::Status(503));
        first.token("api").await.unwrap_err();
        assert_eq!(rig.tokens.calls(), 3);
        // Within the cooldown: the same instance and a fresh one fail fast.
        assert_eq!(first.token("api").await.unwrap_err().code(), "token_unavailable");
        let other = rig.broker().token("api").await.unwrap_err();
        assert!(other.to_string().contains("shared by another instance"), "{other}");
        assert_eq!(rig.tokens.calls(), 3, "no new endpoint calls during the cooldown");
        // After it, rotation resumes by itself.
        rig.tokens.set_behavior(Behavior::Normal);
        testkit::wait_until("recovery after the cooldown", Duration::from_secs(10), || async {
            first.token("api").await.is_ok()
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn getty_style_string_expiry_form_auth_and_extra_parameters() {
    bounded(async {
        let rig = Rig::start(TokenServerConfig::new(CLIENT_ID, CLIENT_SECRET).expires_in(ExpiresIn::String)).await;
        let config = rig.config("").replace(
            "timeout = \"300ms\"",
            "timeout = \"300ms\"\nauth = \"form\"\nscope = \"read\"\naudience = \"https://api.example.com\"\nextra = { resource = \"images\" }",
        );
        let token = rig.broker_with(&config, &rig.env()).token("api").await.unwrap();
        let lifetime = token.expires_at().unwrap().duration_since(std::time::SystemTime::now()).unwrap();
        assert!(lifetime > Duration::from_secs(1790), "expires_in \"1800\" understood");
        let form = rig.tokens.last_form();
        for (k, v) in [("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("scope", "read"), ("audience", "https://api.example.com"), ("resource", "images")] {
            assert!(form.contains(&(k.to_owned(), v.to_owned())), "{k} missing from {form:?}");
        }
        assert_eq!(rig.tokens.last_authorization(), None);
    })
    .await;
}

#[tokio::test]
async fn basic_auth_is_the_default() {
    bounded(async {
        let rig = Rig::default().await;
        rig.broker().token("api").await.unwrap();
        assert!(rig.tokens.last_authorization().is_some_and(|a| a.starts_with("Basic ")));
        assert!(!rig.tokens.last_form().iter().any(|(k, _)| k == "client_secret"));
    })
    .await;
}

#[tokio::test]
async fn json_source_reads_token_and_absolute_expiry_by_pointer() {
    bounded(async {
        let rig = Rig::default().await;
        let token = rig.broker_with(&json_config(&rig), &rig.env()).token("custom").await.unwrap();
        assert!(rig.tokens.is_valid(token.expose()));
        assert!(token.expires_at().unwrap() > std::time::SystemTime::now() + Duration::from_secs(1700));
    })
    .await;
}

#[tokio::test]
async fn static_keys_need_neither_endpoint_nor_store() {
    bounded(async {
        let rig = Rig::default().await;
        let config = "[upstreams.maps]\nbase_url = \"https://maps.example.com\"\ntoken = { type = \"static\", key = { env = \"API_CLIENT_SECRET\" } }\n";
        let b = rig.broker_with(config, &rig.env());
        let token = b.token("maps").await.unwrap();
        assert_eq!(token.expose(), CLIENT_SECRET);
        assert_eq!(token.outcome(), Provenance::Static);
        assert_eq!((rig.tokens.calls(), rig.upstash.requests()), (0, 0));
        assert_eq!(b.token("nope").await.unwrap_err().code(), "unknown_upstream");
    })
    .await;
}

#[tokio::test]
async fn local_store_is_shared_by_separate_brokers_on_this_machine() {
    bounded(async {
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
                let b = rig.broker_with(&rig.config(""), &env);
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
    })
    .await;
}

/// A `json` source on the token server's JSON route.
fn json_config(rig: &Rig) -> String {
    format!(
        r#"
[upstreams.custom]
base_url = "https://api.example.com"
[upstreams.custom.token]
type = "json"
url = "{}"
token_pointer = "/data/token"
expires_at_pointer = "/data/expires_at"
body = {{ key = {{ env = "API_CLIENT_ID" }}, secret = {{ env = "API_CLIENT_SECRET" }} }}
"#,
        rig.tokens.custom_url()
    )
}

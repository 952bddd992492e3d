//! No secret in any log line or error, over a whole run with failures.
//! Its own test binary: the log subscriber is process-global here, so every
//! line from every thread is captured.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{CLIENT_ID, CLIENT_SECRET, Rig, TEST_TIME, bounded};
use testkit::Behavior;

/// The secret deployed as the current one in the rotation step.
const NEW_SECRET: &str = "client-secret-new-41d0";

/// Captures every log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line_or_error() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let mut errors = Vec::new();
    let mut tokens = Vec::new();
    bounded(TEST_TIME, async {
        let mut rig = Rig::default().await;
        let b = rig.broker();
        let t = b.token("api").await.unwrap();
        b.invalidate("api", &t).await.unwrap();
        tokens.push(b.token("api").await.unwrap().expose().to_owned());
        for behavior in [
            Behavior::Status(500),
            Behavior::Garbage,
            Behavior::OAuthError { error: "invalid_client".into(), description: CLIENT_SECRET.into() },
        ] {
            b.invalidate("api", &b.token("api").await.unwrap()).await.unwrap();
            rig.tokens.set_behavior(behavior);
            let err = rig.broker().token("api").await.map(|_| ()).unwrap_err();
            rig.tokens.set_behavior(Behavior::Normal);
            errors.push(format!("{err} {err:?}"));
            tokio::time::sleep(Duration::from_millis(2100)).await; // let the shared cooldown lapse
        }
        // A rotation: the new current secret refused, the previous one accepted; then both refused.
        let rotating = rig
            .site()
            .edit_upstream("api", |u| u.token(rig.token().previous_client_secret("API_CLIENT_SECRET_PREVIOUS")))
            .render();
        let env = rig.env_with(&[("API_CLIENT_SECRET", NEW_SECRET), ("API_CLIENT_SECRET_PREVIOUS", CLIENT_SECRET)]);
        b.invalidate("api", &b.token("api").await.unwrap()).await.unwrap();
        let r = rig.broker_with(&rotating, &env);
        tokens.push(r.token("api").await.unwrap().expose().to_owned());
        r.invalidate("api", &r.token("api").await.unwrap()).await.unwrap();
        rig.tokens.accept_secrets(&["another"]);
        let err = rig.broker_with(&rotating, &env).token("api").await.map(|_| ()).unwrap_err();
        rig.tokens.accept_secrets(&[CLIENT_SECRET]);
        errors.push(format!("{err} {err:?} {r:?} {:?}", r.summary()));
        rig.redis.stop().await.unwrap();
        tokens.push(rig.broker().token("api").await.unwrap().expose().to_owned());
        errors.push(format!("{:?} {:?}", b, b.summary()));
        tokens.extend(rig.tokens.issued());
        let secrets = [
            CLIENT_ID.to_owned(),
            CLIENT_SECRET.to_owned(),
            NEW_SECRET.to_owned(),
            rig.upstash.token().to_owned(),
            rig.key.clone(),
        ];
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            logs.contains("token ready")
                && logs.contains("shared store unavailable")
                && logs.contains("the previous secret minted the token"),
            "the flow was logged:\n{logs}"
        );
        for secret in secrets.iter().chain(&tokens) {
            assert!(!logs.contains(secret.as_str()), "a secret leaked into the logs:\n{logs}");
            for e in &errors {
                assert!(!e.contains(secret.as_str()), "a secret leaked into an error: {e}");
            }
        }
        Ok(())
    })
    .await;
}

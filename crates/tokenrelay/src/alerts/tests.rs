use std::path::Path;

use testkit::WebhookReceiver;

use super::*;
use crate::config::{Config, Env};

const TEST_TIME: Duration = Duration::from_secs(20);

/// A broker of upstream `api` whose alerts go to `hook` (none without one),
/// over the local store in `dir`, which instances of one machine share.
fn broker(dir: &Path, hook: Option<&str>, alerts: &str) -> Broker {
    let table =
        if hook.is_some() { format!("[alerts]\nwebhook = {{ env = \"HOOK\" }}\n{alerts}\n") } else { String::new() };
    let toml = format!(
        "{table}[upstreams.api]\nbase_url = \"http://127.0.0.1:9\"\ntoken = {{ type = \"static\", key = {{ env = \"API_KEY\" }} }}\n"
    );
    let mut pairs = vec![("API_KEY", "k"), (crate::store::LOCAL_STORE_VAR, dir.to_str().unwrap())];
    pairs.extend(hook.map(|h| ("HOOK", h)));
    let env = Env::from_pairs(pairs);
    Broker::new(Config::parse(&toml, "tokenrelay.toml", &env).unwrap(), &env).unwrap()
}

/// The alerts of two instances of one site, sharing the store in `dir` and the webhook.
fn two_instances(dir: &Path, receiver: &WebhookReceiver) -> (Alerts, Alerts) {
    let alerts = || Alerts::new(&broker(dir, Some(&receiver.url()), ""));
    (alerts(), alerts())
}

fn kinds(receiver: &WebhookReceiver) -> Vec<String> {
    receiver.accepted().iter().map(|b| b["tokenrelay"]["kind"].as_str().unwrap_or("?").to_owned()).collect()
}

impl Alerts {
    /// Runs the chore a request would start, to its end.
    async fn run_chore(&self) -> bool {
        match self.chore() {
            Some(chore) => {
                chore.await;
                true
            }
            None => false,
        }
    }

    /// Makes every waiting event due now, as after [`RETRY_PAUSE`].
    fn age(&self) {
        self.shared.as_ref().unwrap().lock().waiting.iter_mut().for_each(|w| w.due_ms = 0);
    }
}

fn day() -> Window {
    Window::at(now_ms(), Duration::from_secs(86_400))
}

#[tokio::test]
async fn each_occurrence_is_sent_once_across_instances_and_each_level_once() {
    tokio::time::timeout(TEST_TIME, async {
        let receiver = WebhookReceiver::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_instances(dir.path(), &receiver);
        for _ in 0..2 {
            a.budget("api", None, 80, 20, day());
            b.budget("api", None, 80, 20, day());
        }
        assert!(a.run_chore().await);
        assert!(b.run_chore().await, "b noticed it too, and finds it sent");
        assert_eq!(kinds(&receiver), ["budget_80"]);
        b.budget("api", None, 100, 20, day());
        a.budget("api", None, 100, 20, day());
        assert!(b.run_chore().await);
        assert!(a.run_chore().await);
        assert!(!a.run_chore().await && !b.run_chore().await, "nothing left to send");
        assert_eq!(kinds(&receiver), ["budget_80", "budget_100"]);
        let next_day = Window { number: day().number + 1, ..day() };
        a.budget("api", None, 80, 20, next_day);
        assert!(a.run_chore().await);
        assert_eq!(kinds(&receiver), ["budget_80", "budget_100", "budget_80"], "the next window's own");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_failed_delivery_is_logged_and_retried_by_a_later_chore() {
    tokio::time::timeout(TEST_TIME, async {
        let receiver = WebhookReceiver::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_instances(dir.path(), &receiver);
        receiver.fail_next(1);
        a.token_failing("api");
        assert!(a.run_chore().await);
        assert_eq!((receiver.refused(), receiver.accepted().len()), (1, 0));
        assert!(!a.run_chore().await, "not again before the pause");
        b.token_failing("api");
        assert!(b.run_chore().await, "another instance that noticed it sends it: the failure left no mark");
        assert_eq!(kinds(&receiver), ["token_failing"]);
        a.age();
        assert!(a.run_chore().await);
        assert_eq!(kinds(&receiver), ["token_failing"], "a finds it sent and forgets it");
        assert!(!a.run_chore().await);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn probing_alerts_once_the_hours_refusals_reach_the_threshold() {
    tokio::time::timeout(TEST_TIME, async {
        let receiver = WebhookReceiver::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let alerts = Alerts::new(&broker(dir.path(), Some(&receiver.url()), "probing_refusals = 3"));
        alerts.probed(Some("api"));
        alerts.probed(Some("api"));
        assert!(!alerts.run_chore().await, "below the threshold");
        for _ in 0..5 {
            alerts.probed(Some("api"));
        }
        assert!(alerts.run_chore().await);
        let sent = receiver.accepted();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["tokenrelay"]["kind"], "probing");
        assert_eq!(sent[0]["tokenrelay"]["figures"], serde_json::json!({ "refusals": 3, "threshold": 3 }));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_test_event_is_posted_at_once_and_needs_a_webhook() {
    tokio::time::timeout(TEST_TIME, async {
        let receiver = WebhookReceiver::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        send_test(&broker(dir.path(), Some(&receiver.url()), "")).await.unwrap();
        assert_eq!(kinds(&receiver), ["test"]);
        assert!(receiver.accepted()[0]["content"].as_str().unwrap().contains("the webhook works"));

        let none = send_test(&broker(dir.path(), None, "")).await.unwrap_err();
        assert_eq!(none.code(), "alert_failed");
        receiver.fail_next(1);
        let refused = send_test(&broker(dir.path(), Some(&receiver.url()), "")).await.unwrap_err();
        assert_eq!(refused.to_string(), "alert not sent: the webhook answered HTTP 500 (webhook from $HOOK)");
        assert!(!refused.to_string().contains(&receiver.url()), "never the URL");
        assert!(!Alerts::new(&broker(dir.path(), None, "")).run_chore().await, "no [alerts]: nothing to do");
    })
    .await
    .unwrap();
}

//! The usage meter end to end: a scripted day of traffic on a simulated
//! clock (the meter's), through a real upstream, token endpoint and Redis
//! behind the Upstash protocol; `status` and the report then agree with
//! what the test counted from the answers it got, to the request.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use testkit::config::{RateLimit, RouteCache, route};

use super::report::report_at;
use super::status::status_at;
use super::testing::Servers;
use super::usage::Usage;
use crate::relay::meter::testing::TestClock;
use crate::relay::{ClientIp, Relay};
use crate::store::keys::meter::{DAY_MS, HOUR_MS};

const MINUTE: u64 = 60_000;
/// Midnight UTC of the scripted day.
const DAY0: u64 = 20_000 * DAY_MS;
/// When the test reads: 23:45 on the scripted day.
const NOW: u64 = DAY0 + 23 * HOUR_MS + 45 * MINUTE;
/// The routes, as scopes name them (`None`: requests without a route).
const SEARCH: Option<&str> = Some("/search/**");
const ECHO: Option<&str> = Some("/echo/**");

/// What the test counted of one scope's answers, in one span.
#[derive(Debug, Default, Clone, PartialEq)]
struct Counted {
    answers: BTreeMap<String, u64>,
    refusals: BTreeMap<String, u64>,
    cache: BTreeMap<&'static str, u64>,
    clients: HashMap<IpAddr, ()>,
}

/// An upstream, and one of its routes or `None`.
type Scope = (String, Option<&'static str>);

/// The world: servers, the relay on the test's clock, and the answers it
/// got per scope, each with when it was sent.
struct Day {
    clock: TestClock,
    relay: Relay,
    counted: HashMap<Scope, Vec<(u64, Answer)>>,
}

/// One answer as the test saw it.
#[derive(Debug, Clone)]
struct Answer {
    class: String,
    code: Option<String>,
    cache: Option<&'static str>,
    ip: IpAddr,
}

impl Day {
    /// Sends `path` from `ip` at `at`, and counts the answer under `scope`.
    async fn send(&mut self, at: u64, scope: (&str, Option<&'static str>), path: &str, ip: &str) -> u16 {
        self.clock.set(at);
        let ip: IpAddr = ip.parse().unwrap();
        let request = http::Request::get(format!("/api/relay/{path}"))
            .extension(ClientIp(ip))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.relay.handle_buffered(request).await;
        let status = response.status().as_u16();
        let code = (status >= 400).then(|| {
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            body["error"]["code"].as_str().unwrap().to_owned()
        });
        let header = response.headers().get("cache-status").map(|v| v.to_str().unwrap().to_owned());
        let cache = header.and_then(|h| match h {
            h if h.contains("detail=memory") => Some("memory"),
            h if h.contains("collapsed") => Some("collapsed"),
            h if h.contains("stale-while-revalidate") => Some("stale"),
            h if h.contains("stale-if-error") => Some("staleIfError"),
            h if h.contains("; hit") => Some("store"),
            _ => None,
        });
        let answer = Answer { class: format!("{}xx", status / 100), code, cache, ip };
        self.counted.entry((scope.0.to_owned(), scope.1)).or_default().push((at, answer));
        status
    }

    /// What the test counted of `scope` in `span` (ms since the epoch).
    fn counted(&self, upstream: &str, route: Option<&'static str>, span: std::ops::Range<u64>) -> Counted {
        let mut c = Counted::default();
        let answers = self.counted.get(&(upstream.to_owned(), route)).map_or(&[][..], Vec::as_slice);
        for (_, a) in answers.iter().filter(|(at, _)| span.contains(at)) {
            *c.answers.entry(a.class.clone()).or_default() += 1;
            if let Some(code) = &a.code {
                *c.refusals.entry(code.clone()).or_default() += 1;
            }
            if let Some(kind) = a.cache {
                *c.cache.entry(kind).or_default() += 1;
            }
            c.clients.insert(a.ip, ());
        }
        c
    }
}

/// `usage` against what the test counted, its clients over the hours the span touches.
fn assert_agrees(usage: &Usage, counted: &Counted, clients: &Counted, what: &str) {
    assert_eq!(usage.statuses, counted.answers, "{what}: answers by class");
    assert_eq!(usage.refusals, counted.refusals, "{what}: refusals by code");
    let cache = serde_json::to_value(&usage.cache).unwrap();
    for kind in ["memory", "store", "collapsed", "stale", "staleIfError"] {
        let want = counted.cache.get(kind).copied().unwrap_or(0);
        assert_eq!(cache[kind].as_u64(), Some(want), "{what}: cache answers from {kind}");
    }
    assert_eq!(usage.clients, clients.clients.len() as u64, "{what}: distinct clients");
}

#[tokio::test]
async fn after_a_scripted_day_status_and_the_report_agree_with_the_answers_to_the_request() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let servers = Servers::start().await;
        let broker = servers.broker(|r| {
            r.rate_limit(RateLimit::new(6, Duration::from_secs(86_400)))
                .budget(testkit::config::Budget::new(500, Duration::from_secs(86_400)))
                .route(route("/search/**").methods(["GET"]).cache(RouteCache::ttl(Duration::from_secs(600))))
                .route(route("/echo/**").methods(["GET"]))
        });
        let clock = TestClock::default();
        let mut day =
            Day { clock: clock.clone(), relay: Relay::on_clock(broker.clone(), &clock), counted: HashMap::new() };

        for h in 0..24u64 {
            let at = |minute: u64| DAY0 + h * HOUR_MS + minute * MINUTE;
            let ip = format!("198.51.100.{}", h + 1);
            // The last hour's traffic ends before the test reads, at 23:45.
            let minutes: &[u64] = if h == 23 { &[5, 20] } else { &[5, 20, 40] };
            for m in minutes.iter().take(usize::try_from(h % 3).unwrap() + 1) {
                day.send(at(*m), ("api", SEARCH), "api/search/images?q=day", &ip).await;
            }
            day.send(at(if h == 23 { 30 } else { 50 }), ("api", ECHO), &format!("api/echo/h{h}"), &ip).await;
            if h % 4 == 0 {
                assert_eq!(day.send(at(10), ("api", None), "api/nope", &ip).await, 404);
            }
            if h % 6 == 0 {
                assert_eq!(day.send(at(12), ("*", None), "elsewhere/x", &ip).await, 404);
            }
        }
        // A greedy client past its rate limit in the last hour.
        for _ in 0..8 {
            day.send(NOW - 30 * MINUTE, ("api", ECHO), "api/echo/greedy", "203.0.113.9").await;
        }
        // The last counts are written by the next request past the meter's interval.
        day.send(NOW - MINUTE, ("*", None), "elsewhere/flush", "203.0.113.10").await;
        clock.set(NOW);

        let now = UNIX_EPOCH + Duration::from_millis(NOW);
        let status = status_at(&broker, Some("api"), now).await.unwrap();
        let usage = &status[0].usage;
        // The 60 minutes up to now; its clients are those of this hour and the last.
        let last_hour = NOW - 59 * MINUTE - (NOW % MINUTE)..NOW + 1;
        let two_hours = NOW - NOW % HOUR_MS - HOUR_MS..NOW + 1;
        let last_day = DAY0..NOW + 1;
        for (i, route) in [None, SEARCH, ECHO].into_iter().enumerate() {
            assert_eq!(usage[i].route.as_deref(), route);
            let (hour, clients) =
                (day.counted("api", route, last_hour.clone()), day.counted("api", route, two_hours.clone()));
            assert_agrees(&usage[i].last_hour, &hour, &clients, "last hour");
            let whole = day.counted("api", route, last_day.clone());
            assert_agrees(&usage[i].last_day, &whole, &whole, "last day");
        }
        let calls: u64 = usage.iter().map(|u| u.last_day.calls).sum();
        assert_eq!(calls, servers.api.requests().len() as u64, "every upstream call, to the request");
        let fetches: u64 = usage.iter().map(|u| u.last_day.token_fetches).sum();
        assert_eq!(fetches, servers.tokens.calls() as u64, "every token fetch");
        let latency: u64 = usage.iter().flat_map(|u| &u.last_day.latency.histogram).map(|b| b.calls).sum();
        assert_eq!(latency, calls, "each call has its latency");
        assert!(usage[1].last_day.latency.p95_ms.is_some());
        assert_eq!(usage[2].last_hour.refusals.get("rate_limited"), Some(&2), "8 sent, a limit of 6");

        let html = report_at(&broker, now).await.unwrap();
        let searched = day.counted("api", SEARCH, last_day.clone());
        let echoed = day.counted("api", ECHO, last_day.clone());
        let refused: u64 = [None, SEARCH, ECHO]
            .into_iter()
            .map(|r| day.counted("api", r, last_day.clone()).refusals.values().sum::<u64>())
            .sum();
        let hits: u64 = searched.cache.values().sum::<u64>() + echoed.cache.values().sum::<u64>();
        assert!(html.contains(&format!("data-upstream=\"api\" data-calls=\"{calls}\"")), "calls in the report");
        assert!(html.contains(&format!("data-cache-hits=\"{hits}\"")), "cache hits in the report");
        assert!(html.contains(&format!("data-refusals=\"{refused}\"")), "refusals in the report");
        let unknown = day.counted("*", None, last_day.clone()).refusals["unknown_upstream"];
        assert!(html.contains(&format!("data-code=\"unknown_upstream\" data-count=\"{unknown}\"")), "{unknown}");
        assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    })
    .await
    .unwrap();
}

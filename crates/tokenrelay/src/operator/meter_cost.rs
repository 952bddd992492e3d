//! What the usage meter costs in store commands (Upstash bills per
//! command), measured: 30 s of traffic at 10 requests per second, in real
//! time, sent at the same instants to two relays, each on a Redis of its
//! own behind the Upstash protocol (which counts the commands it receives):
//! one whose meter runs on the wall clock, one whose meter's clock stands
//! still, so that it never writes. Their rate limits sync alike; the
//! difference is what metering adds.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use testkit::config::route;

use super::testing::Servers;
use crate::relay::meter::FLUSH_INTERVAL;
use crate::relay::meter::testing::TestClock;
use crate::relay::{ClientIp, Relay};

/// The traffic: 10 requests a second for 30 s, from 50 clients.
const PER_SECOND: u64 = 10;
const SECONDS: u64 = 30;
const CLIENTS: u64 = 50;

/// A relay on a Redis of its own, and the servers it needs.
struct World {
    relay: Relay,
    servers: Servers,
}

/// A world whose meter runs (on the wall clock), or never writes.
async fn world(metered: bool) -> World {
    let servers = Servers::start().await;
    let broker = servers.broker(|r| r.route(route("/echo/**").methods(["GET"])));
    let relay = if metered { Relay::new(broker) } else { Relay::on_clock(broker, &TestClock::default()) };
    World { relay, servers }
}

async fn send(relay: &Relay, i: u64) {
    let request = http::Request::get(format!("/api/relay/api/echo/{i}"))
        .extension(ClientIp(format!("198.51.100.{}", i % CLIENTS).parse().unwrap()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(relay.handle_buffered(request).await.status(), 200);
}

#[tokio::test]
async fn metering_adds_one_command_per_flush_interval() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (metered, still) = (world(true).await, world(false).await);
        let start = tokio::time::Instant::now();
        for i in 0..PER_SECOND * SECONDS {
            tokio::join!(send(&metered.relay, i), send(&still.relay, i));
            tokio::time::sleep_until(start + Duration::from_millis((i + 1) * 1000 / PER_SECOND)).await;
        }
        let (with, without) = (metered.servers.upstash.commands(), still.servers.upstash.commands());
        let added = with.saturating_sub(without);
        // Stated in the README (Usage metering): measured here, printed for the record.
        println!(
            "metering: {added} store commands added over {SECONDS} s at {PER_SECOND} req/s ({with} with, {without} without): {} a day per instance",
            added * 86_400 / SECONDS
        );
        let writes = SECONDS / FLUSH_INTERVAL.as_secs();
        // The rate limits' syncs may differ by one between the relays (one
        // ends a sync interval a request earlier): a count and a read.
        assert!(added <= writes + 2, "one command per interval: {added} added for {writes} intervals");
        assert!(with > without, "the counts were written");
    })
    .await
    .unwrap();
}

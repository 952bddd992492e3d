//! The npm package's JS handlers (`tokenrelay/fetch`) held to the checklist
//! every shell passes, each Node server frozen between requests as a
//! serverless platform runs it: `createRelay` behind a Fetch API `Request`
//! as frameworks build one, with the scenarios whose figures freezing
//! changes, and `createNodeRelay`, which sees the request target as sent.
//! `cargo test -p tokenrelay-node --test fetch_relay -- --nocapture` prints
//! the figures. The addon must be built first (scripts/test.sh's build phase).

use relay_e2e::frozen::NodeAdapter;

/// The Node server the suites start (`node serve-relay.mjs <adapter>`).
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js/support/serve-relay.mjs");
/// What `scripts/build-linux.sh addon` writes, and the package loads on this machine.
const ADDON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tokenrelay.linux-x64-gnu.node");

fn node_server(adapter: NodeAdapter) -> relay_e2e::frozen::Platform {
    assert!(
        std::path::Path::new(ADDON).is_file(),
        "{ADDON} is missing: build the addon first (`bash scripts/build-linux.sh addon`, as scripts/test.sh does)"
    );
    relay_e2e::frozen::Platform::Node { script: SCRIPT.into(), adapter }
}

relay_e2e::frozen_suite!(node_server(NodeAdapter::Fetch));

#[tokio::test]
async fn the_node_listener_holds_every_check_with_instances_frozen_between_requests() {
    bounded(Duration::from_secs(150), checklist(&node_server(NodeAdapter::Node))).await;
}

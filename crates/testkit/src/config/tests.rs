use std::time::Duration;

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn parsed(config: &SiteConfig) -> toml_edit::DocumentMut {
    let text = config.render();
    text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn an_empty_site_renders_no_tables() {
    assert_eq!(SiteConfig::new().render(), "");
}

#[test]
fn secrets_are_environment_references_and_durations_humantime() {
    let site = SiteConfig::new()
        .cache(|c| c.min_token_age(Duration::from_secs(3600)).lock_lease(Duration::from_millis(1500)))
        .upstream(UpstreamConfig::new("getty", "https://api.example.com", oauth2("https://t.example", "ID", "SECRET")));
    let t = parsed(&site);
    assert_eq!(t["cache"]["min_token_age"].as_str(), Some("1h"));
    assert_eq!(t["cache"]["lock_lease"].as_str(), Some("1s 500ms"));
    let token = &t["upstreams"]["getty"]["token"];
    assert_eq!(token["type"].as_str(), Some("oauth2_client_credentials"));
    assert_eq!(token["client_id"]["env"].as_str(), Some("ID"));
    assert_eq!(token["client_secret"]["env"].as_str(), Some("SECRET"));
    assert!(t["upstreams"]["getty"].get("relay").is_none(), "not relayed unless asked");
}

#[test]
fn routes_keep_their_order_and_only_the_options_set() {
    let site = SiteConfig::new().upstream(
        UpstreamConfig::new("api", "https://api.example.com", Token::Static(env("KEY"))).relay(|r| {
            r.header("Api-Key", env("KEY"))
                .rate_limit(RateLimit::new(3, MINUTE).per(Per::Caller))
                .route(route("/b").methods(["GET"]).cache(RouteCache::ttl(MINUTE).stale_if_error(MINUTE)))
                .route("/a")
        }),
    );
    let relay = &parsed(&site)["upstreams"]["api"]["relay"];
    let routes: Vec<_> = relay["routes"].as_array().unwrap().iter().map(|r| r.as_inline_table().unwrap()).collect();
    assert_eq!(routes.iter().map(|r| r["path"].as_str().unwrap()).collect::<Vec<_>>(), ["/b", "/a"]);
    assert_eq!(routes[1].len(), 1, "{:?}", routes[1]);
    assert_eq!(routes[0]["cache"].as_inline_table().unwrap()["stale_if_error"].as_str(), Some("1m"));
    assert_eq!(relay["rate_limit"]["per"].as_str(), Some("caller"));
    assert_eq!(relay["headers"]["Api-Key"]["env"].as_str(), Some("KEY"));
}

#[test]
fn an_upstream_added_again_replaces_the_first_and_can_be_edited() {
    let token = || oauth2("https://t.example", "ID", "SECRET");
    let site = SiteConfig::new()
        .upstream(UpstreamConfig::new("api", "https://one.example", token()))
        .upstream(UpstreamConfig::new("api", "https://two.example", token()))
        .edit_upstream("api", |u| u.relay(|r| r.route("/x")));
    let t = parsed(&site);
    assert_eq!(t["upstreams"]["api"]["base_url"].as_str(), Some("https://two.example"));
    assert_eq!(t["upstreams"]["api"]["relay"]["routes"][0]["path"].as_str(), Some("/x"));
}

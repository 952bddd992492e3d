//! testkit's `config::SiteConfig` writes what `Config::parse` accepts, with
//! every option set: the rigs build their worlds with it, and testkit cannot
//! check this itself (tokenrelay's tests depend on testkit, not the reverse).

use std::time::Duration;

use testkit::config::{
    Budget, Caller, Inject, JsonToken, Per, RateLimit, RouteCache, SiteConfig, Token, Turnstile, UpstreamConfig, env,
    oauth2, route,
};
use tokenrelay::{Config, Env};

const MINUTE: Duration = Duration::from_secs(60);

fn every_option() -> SiteConfig {
    let oauth = oauth2("https://auth.example.com/token", "ID", "SECRET")
        .previous_client_secret("SECRET_PREVIOUS")
        .form_auth()
        .scope("read")
        .audience("https://api.example.com")
        .extra("resource", "images")
        .default_lifetime(MINUTE)
        .timeout(Duration::from_millis(300));
    let json = JsonToken::new("https://auth.example.com/json", "/data/token")
        .expires_in_pointer("/data/expires_in")
        .body("key", env("ID"))
        .body("secret", env("SECRET"))
        .previous_secret("SECRET_PREVIOUS", "body.secret")
        .default_lifetime(MINUTE)
        .timeout(Duration::from_millis(300));
    let jwt = Caller::jwt("https://id.example.com/jwks.json", "https://id.example.com/", "api");
    let turnstile = Turnstile::new("TURNSTILE_SECRET")
        .siteverify_url("https://verify.example.com/siteverify")
        .hostnames(["www.example.com"])
        .action("search");
    SiteConfig::new()
        .cache(|c| {
            c.safety_margin(MINUTE)
                .refresh_window(MINUTE)
                .lock_lease(Duration::from_secs(2))
                .wait_timeout(Duration::from_secs(5))
                .failure_cooldown(Duration::from_secs(2))
                .min_token_age(Duration::ZERO)
                .invalidations_per_hour(3)
        })
        .store(|s| s.allow_unencrypted().timeout(Duration::from_secs(2)))
        .relay_settings(|r| {
            r.allowed_origins(["https://site.example"])
                .rate_limit(RateLimit::new(100, MINUTE).ipv6_prefix(56))
                .max_request_bytes(4096)
                .max_response_bytes(32768)
                .max_cached_body_bytes(16384)
                .timeout(Duration::from_secs(2))
        })
        .upstream(UpstreamConfig::new("getty", "https://api.example.com/v3", oauth).relay(|r| {
            r.header("Api-Key", env("ID"))
                .header("X-Client", "tokenrelay")
                .inject(Inject::Header { name: "Authorization".into(), format: Some("Token {token}".into()) })
                .rate_limit(RateLimit::new(10, MINUTE))
                .budget(Budget::new(1000, Duration::from_secs(86400)))
                .route(route("/search/images").methods(["GET"]).cache_control("public, max-age=60"))
                .route(route("/echo/params/**").path_params().forward_range())
                .route(route("/echo/human/**").caller(Caller::turnstile(turnstile)))
                .route(
                    route("/other/**")
                        .methods(["GET", "POST"])
                        .cache(
                            RouteCache::ttl(MINUTE)
                                .stale_while_revalidate(MINUTE)
                                .stale_if_error(MINUTE)
                                .override_upstream(),
                        )
                        .budget(Budget::new(10, MINUTE)),
                )
        }))
        .upstream(
            UpstreamConfig::new("custom", "https://custom.example.com", json)
                .relay(|r| r.inject(Inject::Query("access_token".into())).route("/**")),
        )
        .upstream(UpstreamConfig::new("signed", "https://api.example.com", Token::Static(env("MAPS_KEY"))).relay(|r| {
            r.rate_limit(RateLimit::new(2, MINUTE).per(Per::Caller)).route(route("/**").caller(jwt.session(MINUTE)))
        }))
        .upstream(UpstreamConfig::new("maps", "https://maps.example.com", Token::Static(env("MAPS_KEY"))))
}

#[test]
fn every_option_the_builder_writes_is_one_the_relay_reads() {
    let text = every_option().render();
    let env = Env::from_pairs([
        ("ID", "id"),
        ("SECRET", "secret"),
        ("SECRET_PREVIOUS", "old"),
        ("MAPS_KEY", "k"),
        ("TURNSTILE_SECRET", "t"),
    ]);
    let config = Config::parse(&text, "tokenrelay.toml", &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.upstreams().map(|u| u.name()).collect::<Vec<_>>(), ["custom", "getty", "maps", "signed"]);
    let previous: Vec<(String, String)> = config
        .secret_vars()
        .into_iter()
        .filter(|v| v.name == "SECRET_PREVIOUS")
        .map(|v| (v.upstream, v.field))
        .collect();
    let read = [("custom", "token.previous_secret"), ("getty", "token.previous_client_secret")];
    assert_eq!(previous, read.map(|(u, f)| (u.to_owned(), f.to_owned())), "both previous secrets are read");
}

use super::*;
use crate::token::json::Body;
use crate::token::oauth2::ClientAuth;

const GETTY: &str = r#"
[upstreams.getty]
base_url = "https://api.gettyimages.com/v3"

[upstreams.getty.token]
type = "oauth2_client_credentials"
url = "https://authentication.gettyimages.com/oauth2/token"
client_id = { env = "GETTY_API_KEY" }
client_secret = { env = "GETTY_API_SECRET" }
scope = "images"
"#;

/// Getty's credentials, as `GETTY` reads them.
pub(super) fn env() -> Env {
    Env::from_pairs([("GETTY_API_KEY", "key-123"), ("GETTY_API_SECRET", "secret-456")])
}

/// What `Config::parse` reports wrong with `text`, one line each.
pub(super) fn problems(text: &str, env: &Env) -> Vec<String> {
    match Config::parse(text, "tokenrelay.toml", env) {
        Err(Error::ConfigInvalid { problems, .. }) => problems,
        other => panic!("expected config_invalid, got {other:?}"),
    }
}

#[test]
fn getty_example_parses_with_defaults() {
    let config = Config::parse(GETTY, "tokenrelay.toml", &env()).unwrap();
    let getty = config.upstreams().next().unwrap();
    assert_eq!(getty.name(), "getty");
    assert_eq!(getty.base_url().as_str(), "https://api.gettyimages.com/v3");
    let Source::OAuth2(s) = &getty.source else { panic!("oauth2 source") };
    assert_eq!(s.auth, ClientAuth::Basic);
    assert_eq!(s.timeout, DEFAULT_TOKEN_TIMEOUT);
    assert_eq!(config.cache.safety_margin, DEFAULT_SAFETY_MARGIN);
}

#[test]
fn relative_token_url_names_file_upstream_and_field() {
    let text = GETTY.replace("https://authentication.gettyimages.com/oauth2/token", "/oauth2/token");
    let err = Config::parse(&text, "site/tokenrelay.toml", &env()).unwrap_err();
    assert_eq!(err.code(), "config_invalid");
    assert_eq!(err.to_string(), "site/tokenrelay.toml: upstream \"getty\": token.url: relative URL without a base");
}

#[test]
fn every_missing_variable_is_listed_at_once() {
    let err = Config::parse(GETTY, "tokenrelay.toml", &Env::default()).unwrap_err();
    assert_eq!(err.code(), "missing_env");
    let Error::MissingEnv { missing, .. } = &err else { panic!() };
    let names: Vec<_> = missing.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["GETTY_API_KEY", "GETTY_API_SECRET"]);
    assert!(err.to_string().contains("GETTY_API_SECRET (upstream \"getty\": token.client_secret)"), "{err}");
}

#[test]
fn literal_secret_is_refused_without_being_echoed() {
    let text = GETTY.replace("client_secret = { env = \"GETTY_API_SECRET\" }", "client_secret = \"s3cr3t-literal\"");
    let p = problems(&text, &env());
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("upstream \"getty\": token.client_secret: must reference an environment variable"),
        "{}",
        p[0]
    );
    assert!(!p[0].contains("s3cr3t-literal"));
}

#[test]
fn syntax_errors_give_a_line_but_never_the_line_text() {
    let text = format!("{GETTY}\nextra_secret = \"pasted-secret\" oops\n");
    let p = problems(&text, &env());
    assert!(p[0].starts_with("line 12:"), "{}", p[0]);
    assert!(!p[0].contains("pasted-secret"), "{}", p[0]);
}

#[test]
fn unknown_fields_and_types_are_named() {
    let p = problems(&GETTY.replace("scope = \"images\"", "scop = \"images\""), &env());
    assert!(p[0].contains("scop"), "{}", p[0]);
    let p = problems(&GETTY.replace("oauth2_client_credentials", "magic"), &env());
    assert!(p[0].contains("magic"), "{}", p[0]);
}

#[test]
fn several_problems_are_reported_together() {
    let text = r#"
[upstreams."Bad Name"]
base_url = "ftp://example.com"
token = { type = "static", key = "literal" }
"#;
    let p = problems(text, &env());
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().any(|m| m.contains("name must use only")));
    assert!(p.iter().any(|m| m.contains("base_url: scheme must be http or https")));
    assert!(p.iter().any(|m| m.contains("token.key: must reference an environment variable")));
}

#[test]
fn empty_config_says_what_to_add() {
    let p = problems("", &env());
    assert_eq!(p, ["no upstreams configured: add an [upstreams.<name>] table"]);
}

#[test]
fn wait_timeout_must_outlive_the_lock_lease() {
    let text = format!("[cache]\nlock_lease = \"30s\"\nwait_timeout = \"10s\"\n{GETTY}");
    let p = problems(&text, &env());
    assert!(p[0].starts_with("cache.wait_timeout: must be at least cache.lock_lease (30s)"), "{}", p[0]);
}

#[test]
fn lock_lease_must_outlast_the_worst_case_token_fetch() {
    // 3 attempts × 10s + 200ms + 400ms backoff = 30.6s.
    let text = format!("[cache]\nlock_lease = \"30s\"\nwait_timeout = \"40s\"\n{GETTY}timeout = \"10s\"\n");
    let p = problems(&text, &env());
    assert_eq!(
        p,
        [
            "upstream \"getty\": token.timeout: cache.lock_lease (30s) is shorter than the worst-case token fetch, 3 attempts × token.timeout (10s) + 600ms backoff = 30s 600ms: raise cache.lock_lease or lower token.timeout"
        ]
    );
    let fits = text.replace("lock_lease = \"30s\"", "lock_lease = \"31s\"");
    Config::parse(&fits, "tokenrelay.toml", &env()).unwrap();
}

#[test]
fn absurd_cache_durations_are_refused_not_overflowed() {
    let text = format!("[cache]\nfailure_cooldown = \"500000000000y\"\n{GETTY}");
    let p = problems(&text, &env());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("cache.failure_cooldown: must be at most 1year (got 500000000000years)"), "{}", p[0]);
}

#[test]
fn invalidation_limits_have_defaults_and_a_budget_of_at_least_one() {
    let config = Config::parse(GETTY, "tokenrelay.toml", &env()).unwrap();
    assert_eq!(config.cache.min_token_age, DEFAULT_MIN_TOKEN_AGE);
    assert_eq!(config.cache.invalidations_per_hour, DEFAULT_INVALIDATIONS_PER_HOUR);
    let text = format!("[cache]\nmin_token_age = \"5m\"\ninvalidations_per_hour = 0\n{GETTY}");
    assert_eq!(problems(&text, &env()), ["cache.invalidations_per_hour: must be at least 1"]);
}

#[test]
fn json_source_builds_its_body_from_env_references() {
    let text = r#"
[upstreams.custom]
base_url = "https://api.example.com"
[upstreams.custom.token]
type = "json"
url = "https://auth.example.com/token"
token_pointer = "/data/token"
expires_at_pointer = "/data/expires_at"
[upstreams.custom.token.body]
key = { env = "K" }
secret = { env = "S" }
nested = { flag = true, list = [1, "two"] }
"#;
    let env = Env::from_pairs([("K", "key-value"), ("S", "secret-value")]);
    let config = Config::parse(text, "tokenrelay.toml", &env).unwrap();
    let Source::Json(s) = &config.upstreams["custom"].source else { panic!("json source") };
    assert_eq!(s.method, reqwest::Method::POST);
    let Some(Body::Json(t)) = &s.body else { panic!("json body") };
    let rendered = serde_json::to_value(format!("{t:?}")).unwrap();
    assert!(!rendered.to_string().contains("secret-value"), "template Debug must redact");
}

#[test]
fn json_source_needs_some_expiry() {
    let text = r#"
[upstreams.custom]
base_url = "https://api.example.com"
[upstreams.custom.token]
type = "json"
url = "https://auth.example.com/token"
token_pointer = "token"
"#;
    let p = problems(text, &env());
    assert!(p.iter().any(|m| m.contains("token.token_pointer: must be a JSON pointer")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("token.default_lifetime: required")), "{p:?}");
}

#[test]
fn config_debug_never_shows_secret_values() {
    let config = Config::parse(GETTY, "tokenrelay.toml", &env()).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("secret-456") && !shown.contains("key-123"), "{shown}");
}

#[test]
fn summary_names_variables_not_values() {
    let config = Config::parse(GETTY, "tokenrelay.toml", &env()).unwrap();
    let summary = serde_json::to_string(&config.summary("local".into())).unwrap();
    assert!(summary.contains("$GETTY_API_SECRET (redacted)"), "{summary}");
    assert!(!summary.contains("secret-456") && !summary.contains("key-123"), "{summary}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let env = Env::from_pairs([(CONFIG_PATH_VAR, "/nonexistent/tokenrelay.toml")]);
    let err = Config::load(&env).unwrap_err();
    assert_eq!(err.code(), "config_unreadable");
    assert!(err.to_string().starts_with("/nonexistent/tokenrelay.toml: cannot read the config file"), "{err}");
}

#[test]
fn per_caller_limits_need_caller_on_every_route() {
    let jwt = r#"caller = { jwt = { jwks_url = "https://id.example.com/jwks", issuer = "i", audience = "a" } }"#;
    let text = |per: &str, second: &str| {
        format!(
            r#"
[relay]
rate_limit = {{ requests = 5, window = "1m", per = "caller" }}

[upstreams.api]
base_url = "https://api.example.com"
token = {{ type = "static", key = {{ env = "API_KEY" }} }}

[upstreams.api.relay]
rate_limit = {{ requests = 5, window = "1m", per = "{per}" }}
routes = [{{ path = "/a", {jwt} }}, {{ path = "/b" {second} }}]
"#
        )
    };
    let env = Env::from_pairs([("API_KEY", "k")]);
    let problems = |text: &str| match Config::parse(text, "tokenrelay.toml", &env) {
        Err(Error::ConfigInvalid { problems, .. }) => problems,
        other => panic!("expected config_invalid, got {other:?}"),
    };
    let p = problems(&text("caller", ""));
    assert!(p[0].starts_with("relay.rate_limit.per: is per upstream"), "{p:#?}");
    assert!(p[1].starts_with("upstream \"api\": relay.rate_limit.per: \"caller\" needs caller"), "{p:#?}");
    assert_eq!(p.len(), 2, "{p:#?}");
    let p = problems(&text("visitor", &format!(", {jwt}")));
    assert!(p.iter().any(|m| m.contains("per must be \"ip\" or \"caller\"")), "{p:#?}");
    let site_wide_ok =
        text("caller", &format!(", {jwt}")).replace(", per = \"caller\" }\n\n[upstreams", " }\n\n[upstreams");
    let c = Config::parse(&site_wide_ok, "tokenrelay.toml", &env).unwrap();
    let limit = c.upstreams["api"].relay.as_ref().unwrap().rate_limit.unwrap();
    assert_eq!(limit.per, relay::Per::Caller);
}

#[test]
fn cooldown_scope_is_route_by_default_upstream_when_asked_and_nothing_else() {
    let text =
        |cooldown: &str| format!("{GETTY}\n[upstreams.getty.relay]\nroutes = [{{ path = \"/**\" }}]\n{cooldown}");
    let scope = |text: &str| {
        Config::parse(text, "tokenrelay.toml", &env()).unwrap().upstreams["getty"].relay.as_ref().unwrap().cooldown
    };
    assert_eq!(scope(&text("")), relay::CooldownScope::Route);
    assert_eq!(scope(&text("cooldown = \"route\"")), relay::CooldownScope::Route);
    assert_eq!(scope(&text("cooldown = \"upstream\"")), relay::CooldownScope::Upstream);
    let p = problems(&text("cooldown = \"service\""), &env());
    assert_eq!(p, ["upstream \"getty\": relay.cooldown: must be \"route\" (the default) or \"upstream\""], "{p:#?}");
}

#[test]
fn a_previous_secret_is_read_only_while_its_variable_is_set_and_never_as_a_literal() {
    let text = GETTY.replace(
        "scope = \"images\"",
        "scope = \"images\"\nprevious_client_secret = { env = \"GETTY_API_SECRET_PREVIOUS\" }",
    );
    let has_previous = |env: &Env| {
        Config::parse(&text, "tokenrelay.toml", env).unwrap().upstreams().next().unwrap().source.has_previous()
    };
    assert!(!has_previous(&env()), "unset: no previous secret, and no missing variable");
    let mut vars =
        vec![("GETTY_API_KEY", "key-123"), ("GETTY_API_SECRET", "secret-456"), ("GETTY_API_SECRET_PREVIOUS", "")];
    assert!(!has_previous(&Env::from_pairs(vars.clone())), "empty: none either");
    vars[2].1 = "secret-123";
    assert!(has_previous(&Env::from_pairs(vars)));
    let literal = GETTY.replace("scope = \"images\"", "previous_client_secret = \"secret-123\"");
    assert_eq!(
        problems(&literal, &env()),
        [
            "upstream \"getty\": token.previous_client_secret: must reference an environment variable, e.g. { env = \"MY_SECRET\" }, never a literal secret"
        ]
    );
}

#[test]
fn a_json_previous_secret_must_replace_a_field_read_from_the_environment() {
    let text = |replaces: &str| {
        format!(
            r#"
[upstreams.custom]
base_url = "https://api.example.com"
[upstreams.custom.token]
type = "json"
url = "https://auth.example.com/token"
body = {{ key = {{ env = "KEY" }}, secret = {{ env = "SECRET" }}, kind = "literal" }}
previous_secret = {{ env = "SECRET_PREVIOUS", replaces = "{replaces}" }}
token_pointer = "/token"
default_lifetime = "10m"
"#
        )
    };
    let env = Env::from_pairs([("KEY", "k"), ("SECRET", "s"), ("SECRET_PREVIOUS", "p")]);
    let config = Config::parse(&text("body.secret"), "tokenrelay.toml", &env).unwrap();
    assert!(config.upstreams().next().unwrap().source.has_previous());
    for wrong in ["body.kind", "body.nope", "secret"] {
        assert_eq!(
            problems(&text(wrong), &env),
            [format!(
                "upstream \"custom\": token.previous_secret.replaces: \"{wrong}\" is not a field of this source read from the environment; one of: body.key, body.secret"
            )]
        );
    }
}

#[test]
fn a_base_url_whose_user_info_is_no_credential_is_refused_without_its_text() {
    let text = r#"
[upstreams.api]
base_url = "https://%ff%fe:hunter2@api.example.com"
token = { type = "static", key = { env = "KEY" } }
"#;
    let p = problems(text, &Env::from_pairs([("KEY", "k")]));
    assert_eq!(p, ["upstream \"api\": base_url: user name: not UTF-8 once percent-decoded"]);
}

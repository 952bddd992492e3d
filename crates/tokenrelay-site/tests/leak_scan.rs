//! The leak scan through the crate's API, on a real site directory with its
//! own `tokenrelay.toml` and environment: what it reports (file, kind,
//! variable, never a value) and how it fails.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;

use tokenrelay_site::{HandedOut, ScanOptions, SecretKind, SiteOptions, scan_for_leaks};

const CLIENT_SECRET: &str = "client-secret-4b1f-never-shown";
const RELAY_KEY: &str = "relay-key-77e0-never-shown";
const STORE_TOKEN: &str = "upstash-token-2c9d-never-shown";
const BUILD_TOKEN: &str = "tok_build_0a1b2c3d4e5f";
const HANDED_OUT: &str = "tok_handed_out_9f8e7d6c";

const CONFIG: &str = r#"
[upstreams.getty]
base_url = "https://api.example.com/v3"

[upstreams.getty.token]
type = "oauth2_client_credentials"
url = "https://auth.example.com/token"
client_id = { env = "GETTY_API_KEY" }
client_secret = { env = "GETTY_API_SECRET" }

[upstreams.getty.relay]
routes = [{ path = "/search/**" }]
headers = { Api-Key = { env = "GETTY_RELAY_KEY" } }
"#;

/// A site with the config above and a `dist/` holding `files`.
fn site(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenrelay.toml"), CONFIG).unwrap();
    std::fs::create_dir(dir.path().join("dist")).unwrap();
    for (file, bytes) in files {
        let path = dir.path().join("dist").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

/// The site's whole environment ("" unsets what the machine may have set).
fn env() -> HashMap<String, String> {
    [
        ("GETTY_API_KEY", "id"),
        ("GETTY_API_SECRET", CLIENT_SECRET),
        ("GETTY_RELAY_KEY", RELAY_KEY),
        ("UPSTASH_REDIS_REST_URL", "https://store.example"),
        ("UPSTASH_REDIS_REST_TOKEN", STORE_TOKEN),
        ("BUILD_TOKEN", BUILD_TOKEN),
        ("TOKENRELAY_CONFIG", ""),
        ("TOKENRELAY_ENCRYPTION_KEY", ""),
        ("KV_REST_API_URL", ""),
        ("KV_REST_API_TOKEN", ""),
        ("KV_REST_API_READ_ONLY_TOKEN", ""),
        ("KV_URL", ""),
        ("REDIS_URL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn site_options<'a>(dir: &'a Path, env: &'a HashMap<String, String>) -> SiteOptions<'a> {
    SiteOptions { cwd: dir.to_str(), env: Some(env), ..SiteOptions::default() }
}

#[test]
fn each_secret_found_is_named_by_file_kind_and_variable_never_shown() {
    let dir = site(&[
        ("index.html", b"<h1>cats</h1>"),
        ("assets/app.js", format!("fetch(u, {{ headers: {{ Authorization: \"Bearer {BUILD_TOKEN}\" }} }})").as_bytes()),
        ("assets/config.json", b"{\"secret\":\"client-secret-4b1f-never-shown\"}"),
        ("page.html", b"<img src=\"/img?k=relay-key-77e0-never-shown\">"),
        ("debug.txt", format!("redis token: {STORE_TOKEN}").as_bytes()),
        ("auth.txt", format!("Bearer {HANDED_OUT}").as_bytes()),
    ]);
    let env = env();
    let token_vars = ["BUILD_TOKEN".to_owned()];
    let handed_out = [HandedOut { upstream: "getty".into(), by: "getToken", token: HANDED_OUT.into() }];
    let options = ScanOptions {
        site: site_options(dir.path(), &env),
        token_vars: &token_vars,
        handed_out: &handed_out,
        ..ScanOptions::default()
    };
    let shown = format!("{options:?}");
    for secret in [CLIENT_SECRET, RELAY_KEY, STORE_TOKEN, BUILD_TOKEN, HANDED_OUT] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let report = scan_for_leaks(Path::new("dist"), &options).unwrap();
    let found: Vec<(&str, SecretKind, Option<&str>, &str)> =
        report.leaks.iter().map(|l| (l.file.as_str(), l.kind, l.variable.as_deref(), l.secret.as_str())).collect();
    assert_eq!(
        found,
        [
            ("assets/app.js", SecretKind::Token, Some("BUILD_TOKEN"), "the token in $BUILD_TOKEN"),
            (
                "assets/config.json",
                SecretKind::Credential,
                Some("GETTY_API_SECRET"),
                "$GETTY_API_SECRET (token.client_secret of upstream \"getty\")"
            ),
            ("auth.txt", SecretKind::Token, None, "a token of upstream \"getty\" handed out by getToken"),
            (
                "debug.txt",
                SecretKind::Store,
                Some("UPSTASH_REDIS_REST_TOKEN"),
                "$UPSTASH_REDIS_REST_TOKEN (shared store)"
            ),
            (
                "page.html",
                SecretKind::Credential,
                Some("GETTY_RELAY_KEY"),
                "$GETTY_RELAY_KEY (relay.headers.api-key of upstream \"getty\")"
            ),
        ]
    );
    assert_eq!((report.files_scanned, report.secrets_scanned), (6, 5));
    // GETTY_API_KEY's value is too short to search for.
    assert_eq!(report.too_short, ["GETTY_API_KEY"]);
    let shown = format!("{report:?}");
    for secret in [CLIENT_SECRET, RELAY_KEY, STORE_TOKEN, BUILD_TOKEN, HANDED_OUT] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn a_clean_output_has_no_leaks_and_counts_what_it_read() {
    let dir = site(&[("index.html", b"<h1>nothing to see</h1>")]);
    let env = env();
    let options = ScanOptions { site: site_options(dir.path(), &env), ..ScanOptions::default() };
    let report = scan_for_leaks(Path::new("dist"), &options).unwrap();
    assert_eq!((report.leaks.len(), report.outside_links.len()), (0, 0));
    assert_eq!((report.files_scanned, report.bytes_scanned), (1, 23));
}

#[test]
fn past_max_bytes_the_scan_fails_naming_the_file_reached() {
    let dir = site(&[("video.mp4", &[0; 4096])]);
    let env = env();
    let options = ScanOptions {
        site: site_options(dir.path(), &env),
        max_bytes: NonZeroU64::new(1024).unwrap(),
        ..ScanOptions::default()
    };
    let err = scan_for_leaks(Path::new("dist"), &options).unwrap_err();
    assert_eq!(err.code(), "scan_too_large");
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds more than 1024 bytes to search (decompressed .gz/.br content counted), reached at video.mp4: \
             keep large files out of the published output, or raise the scan's maxBytes",
            dir.path().join("dist").display()
        )
    );
}

#[test]
fn a_missing_directory_or_config_fails_with_its_code() {
    let dir = site(&[]);
    let env = env();
    let options = ScanOptions { site: site_options(dir.path(), &env), ..ScanOptions::default() };
    let err = scan_for_leaks(Path::new("public"), &options).unwrap_err();
    assert_eq!(err.code(), "scan_failed");
    assert!(err.to_string().ends_with("public is not a directory: check the publish directory"), "{err}");

    std::fs::remove_file(dir.path().join("tokenrelay.toml")).unwrap();
    let err = scan_for_leaks(Path::new("dist"), &options).unwrap_err();
    assert_eq!(err.code(), "config_unreadable");
}

#[test]
fn during_a_rotation_both_secrets_are_searched_for() {
    const PREVIOUS: &str = "client-secret-old-93aa-never-shown";
    let dir = site(&[
        ("old.js", format!("const s = \"{PREVIOUS}\";").as_bytes()),
        ("new.js", format!("const s = \"{CLIENT_SECRET}\";").as_bytes()),
    ]);
    let config = CONFIG.replace(
        "client_secret = { env = \"GETTY_API_SECRET\" }",
        "client_secret = { env = \"GETTY_API_SECRET\" }\nprevious_client_secret = { env = \"GETTY_API_SECRET_PREVIOUS\" }",
    );
    std::fs::write(dir.path().join("tokenrelay.toml"), config).unwrap();
    let mut env = env();
    env.insert("GETTY_API_SECRET_PREVIOUS".to_owned(), PREVIOUS.to_owned());
    let options = ScanOptions { site: site_options(dir.path(), &env), ..ScanOptions::default() };
    let report = scan_for_leaks(Path::new("dist"), &options).unwrap();
    let found: Vec<(&str, Option<&str>, &str)> =
        report.leaks.iter().map(|l| (l.file.as_str(), l.variable.as_deref(), l.secret.as_str())).collect();
    assert_eq!(
        found,
        [
            ("new.js", Some("GETTY_API_SECRET"), "$GETTY_API_SECRET (token.client_secret of upstream \"getty\")"),
            (
                "old.js",
                Some("GETTY_API_SECRET_PREVIOUS"),
                "$GETTY_API_SECRET_PREVIOUS (token.previous_client_secret of upstream \"getty\")"
            ),
        ]
    );
    assert!(!format!("{report:?}").contains(PREVIOUS));
}

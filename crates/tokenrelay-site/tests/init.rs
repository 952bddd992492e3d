//! `init` through the crate's API on real directories: what each platform
//! gets, that the site's own lines survive, that a second run changes no
//! byte, and that refusals write nothing and carry their stable code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokenrelay_site::{Action, Framework, InitOptions, InitReport, Platform, init};

const ADDED_BY: &str = "# tokenrelay (added by `npx tokenrelay init`)";
const NEW_VERCELIGNORE: &str = "# Never uploaded by `vercel deploy` nor served by `vercel dev` (npx tokenrelay init):\n\
                                # cargo's output (the relay's binary), local secrets, Netlify's local state.\n\
                                /target\n.env\n.netlify\n";

/// A site directory holding `files`.
fn site(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in files {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Every file under `dir`, by relative path, with its text.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.insert(path.strip_prefix(dir).unwrap().to_owned(), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

fn options(dir: &Path, platform: Platform) -> InitOptions {
    InitOptions { cwd: Some(dir.to_owned()), platform: Some(platform), write: true, ..InitOptions::default() }
}

/// Runs `options` twice: the second run plans nothing and changes no byte.
fn init_twice(options: &InitOptions) -> InitReport {
    let first = init(options).unwrap();
    let dir = options.cwd.as_deref().unwrap();
    let written = snapshot(dir);
    let second = init(options).unwrap();
    assert_eq!(second.changes, [], "a second run plans changes");
    assert_eq!(snapshot(dir), written, "a second run changed a file");
    first
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn a_fresh_vercel_site_gets_its_function_routing_and_a_vercelignore_keeping_target_out() {
    let dir = site(&[("index.html", "<h1>site</h1>\n")]);
    let report = init_twice(&options(dir.path(), Platform::Vercel));
    assert_eq!((report.platform, report.detected_from.as_str()), (Platform::Vercel, "--platform"));
    let created: Vec<&str> =
        report.changes.iter().inspect(|c| assert_eq!(c.action, Action::Create)).map(|c| c.file).collect();
    assert_eq!(
        created,
        ["tokenrelay.toml", ".env.example", ".gitignore", ".vercelignore", "api/relay.rs", "Cargo.toml", "vercel.json"]
    );
    assert_eq!(read(dir.path(), ".vercelignore"), NEW_VERCELIGNORE);
    assert_eq!(report.changes[3].summary, "ignores /target, .env, .netlify");
    assert_eq!(read(dir.path(), ".gitignore"), format!("{ADDED_BY}\n.env\n/target\n"));
    assert!(read(dir.path(), "api/relay.rs").contains("tokenrelay::vercel::run()"));
    let manifest: toml_edit::DocumentMut = read(dir.path(), "Cargo.toml").parse().unwrap();
    let release = &manifest["profile"]["release"];
    let optimised = (release["lto"].as_str(), release["codegen-units"].as_integer());
    assert_eq!(optimised, (Some("fat"), Some(1)), "the relay's release build is optimised across crates: {manifest}");
    let settings: Vec<(&str, &[&str])> = report.settings.iter().map(|s| (s.name.as_str(), s.scopes)).collect();
    let all = &["Production", "Preview", "Development"][..];
    assert_eq!(
        settings,
        [
            ("EXAMPLE_CLIENT_ID", all),
            ("EXAMPLE_CLIENT_SECRET", all),
            ("TOKENRELAY_ENCRYPTION_KEY", all),
            ("KV_REST_API_URL", all),
            ("KV_REST_API_TOKEN", all)
        ]
    );
}

#[test]
fn an_existing_vercelignore_keeps_its_lines_and_gains_only_the_missing_entries() {
    let own = "# Build output.\nnode_modules\n/.env\nbuild/";
    let dir = site(&[("vercel.json", "{}\n"), (".vercelignore", own)]);
    let report = init_twice(&InitOptions { platform: None, ..options(dir.path(), Platform::Vercel) });
    assert_eq!(report.detected_from, "vercel.json");
    let change = report.changes.iter().find(|c| c.file == ".vercelignore").unwrap();
    assert_eq!((change.action, change.summary.as_str()), (Action::Update, "ignores /target, .netlify"));
    assert_eq!(read(dir.path(), ".vercelignore"), format!("{own}\n\n{ADDED_BY}\n/target\n.netlify\n"));
}

#[test]
fn a_vercelignore_listing_every_entry_in_its_own_spelling_is_left_alone() {
    // This repository's own spelling: `/.netlify` ignores the same directory as `.netlify`.
    let own = "/target\n/node_modules\n/.netlify\n.env/\n";
    let dir = site(&[(".vercelignore", own)]);
    let report = init(&options(dir.path(), Platform::Vercel)).unwrap();
    assert!(report.changes.iter().all(|c| c.file != ".vercelignore"), "{:?}", report.changes);
    assert_eq!(read(dir.path(), ".vercelignore"), own);
}

#[test]
fn a_framework_site_on_vercel_gets_the_vercelignore_and_its_route_but_no_rust_function() {
    let dir = site(&[("package.json", "{ \"dependencies\": { \"tokenrelay\": \"^0.1.0\" } }\n")]);
    let options = InitOptions { framework: Some(Framework::Next), ..options(dir.path(), Platform::Vercel) };
    let report = init_twice(&options);
    let files: Vec<&str> = report.changes.iter().map(|c| c.file).collect();
    assert_eq!(
        files,
        [
            "tokenrelay.toml",
            ".env.example",
            ".gitignore",
            ".vercelignore",
            "app/api/relay/[...path]/route.ts",
            "next.config.mjs"
        ]
    );
    assert_eq!(report.next_steps, Vec::<String>::new());
}

#[test]
fn a_netlify_site_gets_the_plugin_entry_and_no_vercelignore() {
    let own = "[build]\npublish = \"dist\" # keep\n";
    let dir = site(&[("netlify.toml", own)]);
    let report = init_twice(&InitOptions { platform: None, ..options(dir.path(), Platform::Netlify) });
    assert_eq!((report.platform, report.detected_from.as_str()), (Platform::Netlify, "netlify.toml"));
    let files: Vec<&str> = report.changes.iter().map(|c| c.file).collect();
    assert_eq!(files, ["tokenrelay.toml", ".env.example", ".gitignore", "netlify.toml"]);
    assert!(read(dir.path(), "netlify.toml").starts_with(own));
    assert!(read(dir.path(), "netlify.toml").ends_with("[[plugins]]\npackage = \"netlify-plugin-tokenrelay\"\n"));
    assert_eq!(
        report.settings.last().map(|s| (s.name.as_str(), s.scopes)),
        Some(("UPSTASH_REDIS_REST_TOKEN", &["Builds", "Functions"][..]))
    );
    assert_eq!(report.next_steps, ["install the plugin: npm install --save-dev netlify-plugin-tokenrelay"]);
}

#[test]
fn without_write_the_changes_are_planned_and_nothing_is_written() {
    let dir = site(&[("index.html", "x")]);
    let before = snapshot(dir.path());
    let report = init(&InitOptions { write: false, ..options(dir.path(), Platform::Vercel) }).unwrap();
    assert_eq!(report.changes.len(), 7);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_conflict_is_refused_with_its_code_naming_file_and_rule_and_nothing_is_written() {
    let dir = site(&[(
        "vercel.json",
        "{ \"rewrites\": [{ \"source\": \"/api/relay/:path*\", \"destination\": \"/api/proxy\" }] }\n",
    )]);
    let before = snapshot(dir.path());
    let err = init(&InitOptions { platform: None, ..options(dir.path(), Platform::Vercel) }).unwrap_err();
    assert_eq!(err.code(), "init_conflict");
    assert_eq!(
        err.to_string(),
        "vercel.json: the rewrite \"/api/relay/:path*\" → \"/api/proxy\" already claims /api/relay; \
         the relay needs \"/api/relay/:path*\" → \"/api/relay\"; nothing was changed"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn unusable_options_name_the_option() {
    let dir = site(&[]);
    let err = "heroku".parse::<Platform>().unwrap_err();
    assert_eq!(
        (err.code(), err.to_string().as_str()),
        ("invalid_options", "option platform: \"heroku\" is not \"netlify\" or \"vercel\"")
    );
    let functions_on_vercel =
        InitOptions { framework: Some(Framework::NetlifyFunctions), ..options(dir.path(), Platform::Vercel) };
    assert_eq!(
        init(&functions_on_vercel).unwrap_err().to_string(),
        "option framework: netlify-functions runs on Netlify only: use --platform netlify"
    );
    let missing = dir.path().join("nope");
    let err = init(&options(&missing, Platform::Netlify)).unwrap_err();
    assert_eq!(err.to_string(), format!("option cwd: {} is not a directory", missing.display()));
}

#[test]
fn a_site_with_both_platforms_files_must_choose() {
    let dir = site(&[("netlify.toml", ""), ("vercel.json", "{}")]);
    let err = init(&InitOptions { platform: None, ..options(dir.path(), Platform::Netlify) }).unwrap_err();
    assert_eq!(err.code(), "init_platform_unknown");
    assert_eq!(
        err.to_string(),
        "the site has both netlify.toml and vercel.json: choose with --platform netlify or --platform vercel"
    );
}

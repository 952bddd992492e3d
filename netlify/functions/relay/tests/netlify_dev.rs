//! The Netlify function under `netlify dev` (netlify-cli from npm): netlify-cli
//! builds it from source with cargo, routes `/api/relay/*` to it by the
//! redirect rule, and runs a fresh process of it per request through its
//! local Lambda proxy, passing API Gateway v1-shaped events.
//!
//! The site is a fixed directory under `target/`. netlify-cli's cargo build
//! goes to `<site>/.netlify/functions-serve/relay`, which is made a link to
//! the workspace's own target directory: the build `scripts/test.sh` made
//! there (`cargo build -p tokenrelay-netlify`) is warm, and no second copy of
//! every dependency is compiled for netlify-cli.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use relay_e2e::cache_checks::QueryPassing;
use relay_e2e::{Fixture, Logs, Shell, Visitor, bounded, checks};
use tokio::process::{Child, Command};

/// The redirect rule, as in the repository's netlify.toml (checked below).
const REDIRECT: &str =
    "[[redirects]]\nfrom = \"/api/relay/*\"\nto = \"/.netlify/functions/relay/:splat\"\nstatus = 200\nforce = true\n";
/// Long enough for a cold cargo build of the function on a slow machine.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// netlify-cli prints this once the function is built and registered.
const LOADED: &str = "Loaded function relay";
/// Both tests use the one site directory (and its warm build), one at a time.
static SITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// A running `netlify dev`; its process group is stopped when dropped.
struct NetlifyDev {
    child: Child,
    port: u16,
    logs: Logs,
}

impl NetlifyDev {
    async fn start(env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let root = repo_root();
        let netlify = root.join("node_modules/.bin/netlify");
        ensure!(netlify.exists(), "{} is missing: run `npm ci` in the repository root", netlify.display());
        let site = root.join("target/netlify-e2e/site");
        // netlify-cli builds the function with cargo into the site's functions-serve/relay:
        // warm, seconds; cold, minutes.
        let built = root.join("target/debug/tokenrelay-netlify");
        ensure!(
            built.exists(),
            "{} is missing: the test command's build phase makes it (`cargo build -p tokenrelay-netlify`, scripts/test.sh)",
            built.display()
        );
        share_target_dir(&site, &root.join("target"))?;
        std::fs::create_dir_all(site.join("public"))?;
        std::fs::write(site.join("public/index.html"), "<!doctype html><title>fixture</title>\n")?;
        let static_port = testkit::free_port()?;
        let config = format!(
            "[build]\npublish = \"public\"\n\n[dev]\nframework = \"#static\"\nstaticServerPort = {static_port}\n\n{REDIRECT}"
        );
        std::fs::write(site.join("netlify.toml"), config)?;

        let port = testkit::free_port()?;
        let mut command = Command::new(&netlify);
        command
            .current_dir(&site)
            .args(["dev", "--offline", "--internal-disable-edge-functions", "--no-open", "--skip-gitignore"])
            .args(["--port", &port.to_string()])
            .arg("--functions")
            .arg(root.join("netlify/functions"))
            // Only what netlify-cli and cargo need, plus the fixture's: nothing from the caller's shell.
            .env_clear()
            .envs(testkit::toolchain_env())
            .envs(env)
            .env("NETLIFY_EXPERIMENTAL_BUILD_RUST_SOURCE", "true")
            .env("BROWSER", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so that the static server and function processes stop with it.
        command.process_group(0);
        let mut child = command.spawn().context("spawning netlify dev")?;
        let logs = Logs::default();
        logs.capture(child.stdout.take().context("stdout")?);
        logs.capture(child.stderr.take().context("stderr")?);
        let mut dev = Self { child, port, logs };
        let loaded =
            testkit::wait_until("netlify dev has built and loaded the relay function", READY_TIMEOUT, || async {
                dev.logs.lines().iter().any(|l| l.contains(LOADED) || l.contains("Failed to load function"))
            });
        tokio::select! {
            loaded = loaded => loaded.with_context(|| dev.logs.tail(30))?,
            status = dev.child.wait() => bail!("netlify dev exited with {status:?}: {}", dev.logs.tail(30)),
        }
        ensure!(
            dev.logs.lines().iter().any(|l| l.contains(LOADED)),
            "netlify dev could not load the function: {}",
            dev.logs.tail(30)
        );
        Ok(dev)
    }

    fn shell(&self) -> Shell {
        // netlify dev takes the client IP from the connection (its proxy appends
        // it to X-Forwarded-For, and the last entry wins).
        Shell::new(format!("127.0.0.1:{}", self.port), Visitor::SourceAddress, true, str::to_owned)
    }
}

/// Makes netlify-cli's target directory for the function (`cargo build
/// --target-dir <site>/.netlify/functions-serve/relay`) a link to `target`.
fn share_target_dir(site: &Path, target: &Path) -> anyhow::Result<()> {
    let serve = site.join(".netlify/functions-serve");
    let link = serve.join("relay");
    if std::fs::read_link(&link).is_ok_and(|to| to == target) {
        return Ok(());
    }
    // A directory an older layout built there, or a link elsewhere.
    if link.is_symlink() {
        std::fs::remove_file(&link)?;
    } else if link.exists() {
        std::fs::remove_dir_all(&link)?;
    }
    std::fs::create_dir_all(&serve)?;
    std::os::unix::fs::symlink(target, &link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

impl Drop for NetlifyDev {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group this test created (process_group(0) above), and nothing else.
            let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
        }
    }
}

#[tokio::test]
async fn netlify_function_relays_and_enforces_every_rule() {
    let _site = SITE.lock().await;
    bounded(Duration::from_secs(900), async {
        let fx = Fixture::start().await?;
        let dev = NetlifyDev::start(fx.env()).await?;
        let shell = dev.shell();

        // Every request is a fresh function process: they share only the store.
        checks::one_token_for_many_requests(std::slice::from_ref(&shell), &fx, 200)
            .await
            .context("one token for many requests")?;
        checks::request_rules(&shell, &fx).await?;
        checks::a_401_refreshes_the_token_once(&shell, &fx).await.context("401 refresh")?;
        let shells = std::slice::from_ref(&shell);
        relay_e2e::cache_checks::response_cache(shells, &fx, QueryPassing::Parsed).await.context("response cache")?;
        checks::rate_limit_counts_per_client(&shell, &fx).await.context("rate limit")?;

        // The function's own path reaches the same rules.
        let reply = shell.get("/.netlify/functions/relay/getty/search/images?phrase=cats", &[]).await?;
        ensure!(reply.status == 200, "function path: status {}", reply.status);
        let reply = shell.get("/.netlify/functions/relay/getty/admin", &[]).await?;
        ensure!(reply.error_code().as_deref() == Some("route_not_found"), "function path: {}", reply.text());

        fx.assert_no_secrets("the responses", &shell.transcript())?;
        checks::logs_are_structured_and_secret_free(&dev.logs.lines(), &dev.logs.json_lines(), &fx).context("logs")?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn local_file_store_shares_the_token_between_fresh_processes() {
    let _site = SITE.lock().await;
    bounded(Duration::from_secs(900), async {
        let fx = Fixture::start().await?;
        let store = fx.dir().join("local-store");
        let dev = NetlifyDev::start(fx.env_with_local_store(&store)).await?;
        checks::one_token_for_many_requests(&[dev.shell()], &fx, 50).await?;
        ensure!(fx.upstash.commands() == 0, "no Upstash configured, yet it was used");
        ensure!(store.join("store.json").exists(), "the local store file was not written");
        let sealed = std::fs::read_to_string(store.join("store.json"))?;
        fx.assert_no_secrets("the local store file", &sealed)?;
        Ok(())
    })
    .await;
}

#[test]
fn repository_netlify_toml_routes_the_relay_like_the_fixture() {
    let read = |text: &str| -> toml::Value { toml::from_str(text).expect("valid TOML") };
    let repo =
        read(&std::fs::read_to_string(repo_root().join("netlify.toml")).expect("netlify.toml at the repository root"));
    let fixture = read(REDIRECT);
    let redirects = repo["redirects"].as_array().expect("[[redirects]]");
    assert!(redirects.contains(&fixture["redirects"][0]), "netlify.toml must contain {REDIRECT}");
    assert_eq!(repo["functions"]["directory"].as_str(), Some("netlify/functions"));
}

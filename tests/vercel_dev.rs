//! `vercel dev` on this repository's site, with both Vercel CLIs the project
//! tests (the pinned `vercel` and the current `vercel-current`, package.json),
//! linked to a project of [`testkit::VercelApi`], the stand-in of the Vercel
//! API the CLI asks through its `--api` and `--token` options.
//!
//! The site is the root's own files (vercel.json, .vercelignore, package.json,
//! site/, api/relay.rs) copied to a fixed directory under `target/vercel-dev/`,
//! with the fixture's `tokenrelay.toml` and the project link: the checkout's
//! own `.env` and link stay out of it. `vercel dev` runs the
//! build command (`npm run build`: the prefetch and the example site), serves
//! `public/`, and for each request to `/api/relay/*` has `@vercel/rust` run
//! `cargo build --bin relay` from the site, which cargo resolves to the
//! workspace's root package: the build `scripts/test.sh` made, in the same
//! target directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use relay_e2e::{Fixture, Logs, PREVIEW_BASE_PATH, Shell, Visitor, bounded, checks};
use testkit::{VercelApi, VercelProject};
use tokio::process::{Child, Command};

/// A cold `cargo build --bin relay` on a slow machine; warm, the whole start takes seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// What the CLI prints once it serves.
const READY: &str = "Ready! Available at";
/// The token `--token` passes and the stand-in accepts (the CLI refuses one with `-`).
const TOKEN: &str = "vercelDevToken7f3a";
/// A file of the build directory, which `.vercelignore` keeps from being served.
const BUILD_OUTPUT: &str = "target/debug/relay-build-output.txt";
/// What that file holds.
const BUILD_OUTPUT_MARKER: &str = "build output that vercel dev must not serve";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

/// A Vercel CLI from the root's node_modules.
#[derive(Clone, Copy, Debug)]
enum Cli {
    /// `vercel` in package.json's devDependencies: 48, which does not pass `VERCEL_DEV_PORT`.
    Pinned,
    /// `vercel-current`: 64, which also starts Queues, Schedules and Runtime Cache servers.
    Current,
}

impl Cli {
    fn package(self) -> &'static str {
        match self {
            Cli::Pinned => "vercel",
            Cli::Current => "vercel-current",
        }
    }

    /// The CLI's entry script, from its package.json's `bin`.
    fn script(self) -> anyhow::Result<PathBuf> {
        let package = repo_root().join("node_modules").join(self.package());
        let manifest = std::fs::read_to_string(package.join("package.json"))
            .with_context(|| format!("{} is missing: run `npm install` in the repository root", package.display()))?;
        let manifest: serde_json::Value = serde_json::from_str(&manifest)?;
        let bin = manifest["bin"]["vercel"].as_str().context("no `vercel` in the package's bin")?;
        Ok(package.join(bin))
    }
}

/// The site: the root's files `vercel dev` reads, the fixture's config, the
/// project link, and a file under `target/`.
fn place_site(cli: Cli, fx: &Fixture, project: &VercelProject) -> anyhow::Result<PathBuf> {
    let root = repo_root();
    let site = root.join("target/vercel-dev").join(cli.package());
    if site.exists() {
        std::fs::remove_dir_all(&site)?;
    }
    for file in ["vercel.json", ".vercelignore", "package.json", "api/relay.rs"] {
        let to = site.join(file);
        std::fs::create_dir_all(to.parent().context("a parent")?)?;
        std::fs::copy(root.join(file), &to).with_context(|| format!("copying {file}"))?;
    }
    std::fs::create_dir_all(site.join("site"))?;
    for entry in std::fs::read_dir(root.join("site"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), site.join("site").join(entry.file_name()))?;
    }
    fx.site().write(&site.join("tokenrelay.toml"))?;
    std::fs::create_dir_all(site.join(".vercel"))?;
    std::fs::write(site.join(".vercel/project.json"), project.link_json())?;
    std::fs::create_dir_all(site.join("target/debug"))?;
    std::fs::write(site.join(BUILD_OUTPUT), BUILD_OUTPUT_MARKER)?;
    Ok(site)
}

/// `cargo build --bin relay`, as `@vercel/rust` runs it at each request, run
/// once before: `scripts/test.sh` has built it (seconds), but a cold build
/// would outlast a request's timeout.
async fn warm_build() -> anyhow::Result<()> {
    let built = Command::new("cargo")
        .args(["build", "--bin", "relay", "--locked", "--quiet"])
        .current_dir(repo_root())
        .env_clear()
        .envs(testkit::toolchain_env())
        // As @vercel/rust sets it.
        .env("RUSTFLAGS", "")
        .kill_on_drop(true)
        .output();
    let built = tokio::time::timeout(READY_TIMEOUT, built).await.context("cargo build --bin relay")??;
    ensure!(built.status.success(), "cargo build --bin relay: {}", String::from_utf8_lossy(&built.stderr));
    Ok(())
}

/// A running `vercel dev`; its process group is stopped when dropped.
struct VercelDev {
    child: Child,
    port: u16,
    logs: Logs,
}

impl VercelDev {
    async fn start(cli: Cli, site: &Path, api: &VercelApi, global: &Path) -> anyhow::Result<Self> {
        let port = testkit::free_port()?;
        let mut command = Command::new("node");
        command
            .arg(cli.script()?)
            .args(["dev", "--yes", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--api", &api.url(), "--token", TOKEN])
            // Its own global config (auth.json, telemetry ids), not the user's ~/.vercel.
            .arg("--global-config")
            .arg(global);
        if let Cli::Current = cli {
            // Free ports (0) for its local Queues, Schedules and Runtime Cache
            // servers, rather than 4782-4784, which parallel runs would share.
            command.args(["--queue-port", "0", "--schedules-port", "0", "--runtime-cache-port", "0"]);
        }
        command
            .current_dir(site)
            // The site's variables come from the project (the API stand-in) or `.env`, not from here.
            .env_clear()
            .envs(testkit::toolchain_env())
            // Loopback only: no telemetry, no update check.
            .env("VERCEL_TELEMETRY_DISABLED", "1")
            .env("NO_UPDATE_NOTIFIER", "1")
            .env("NO_COLOR", "1")
            // CLI 48 does not pass the function a port, and vercel_runtime's
            // default is 3000, vercel dev's own: CLI 64 sets its own over this.
            .env("VERCEL_DEV_PORT", testkit::free_port()?.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so that the function processes stop with it.
        command.process_group(0);
        let mut child = command.spawn().context("spawning vercel dev")?;
        let logs = Logs::default();
        logs.capture(child.stdout.take().context("stdout")?);
        logs.capture(child.stderr.take().context("stderr")?);
        let mut dev = Self { child, port, logs };
        let ready = testkit::wait_until("vercel dev serves", READY_TIMEOUT, || async {
            dev.logs.lines().iter().any(|l| l.contains(READY))
        });
        tokio::select! {
            ready = ready => ready.with_context(|| format!("{}\nnot answered by the API stand-in: {}", dev.logs.tail(40), api.unanswered()))?,
            status = dev.child.wait() => bail!("vercel dev exited with {status:?}: {}\nnot answered by the API stand-in: {}", dev.logs.tail(40), api.unanswered()),
        }
        Ok(dev)
    }

    fn shell(&self) -> Shell {
        // vercel dev applies the rewrite itself and resolves dot segments as
        // URLs do; the visitor is the connection's address.
        Shell::new(format!("127.0.0.1:{}", self.port), Visitor::SourceAddress, true, str::to_owned)
    }
}

impl Drop for VercelDev {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group this test created (process_group(0) above), and nothing else.
            let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
        }
    }
}

/// The root's site under `vercel dev` of `cli`: the example page, the relay
/// through the rewrite with the project's variables and then with `.env`'s,
/// its refusals, and nothing of `target/`.
async fn serves_the_site_and_relays(cli: Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    let fx = Fixture::start().await?;
    // The site's variables, set in the project: the config is the site's tokenrelay.toml.
    let vars: Vec<_> = fx.env().into_iter().filter(|(k, _)| k != "TOKENRELAY_CONFIG").collect();
    let mut project = VercelProject::new(&format!("prj_tokenrelay_dev_{}", cli.package().replace('-', "_")), TOKEN);
    for (name, value) in &vars {
        project = project.var(name, value);
    }
    warm_build().await?;
    let api = VercelApi::start(project.clone()).await?;
    let site = place_site(cli, &fx, &project)?;
    let global = fx.dir().join("vercel-global-config");
    let dev = VercelDev::start(cli, &site, &api, &global).await?;
    let ready = started.elapsed();
    let shell = dev.shell();

    let page = shell.get("/", &[]).await?;
    ensure!(page.status == 200 && page.text().contains("<html"), "the example page: {} {}", page.status, page.text());
    let built = std::fs::read_to_string(site.join("public/index.html")).context("the build wrote no public/")?;
    ensure!(page.text() == built, "/ is not the page the build rendered");

    checks::happy_path_forwards_only_what_it_should(&shell, &fx)
        .await
        .with_context(|| format!("happy path\n{}", dev.logs.tail(40)))?;
    let traversal = shell.get("/api/relay/getty/echo/%2e%2e/%2e%2e/admin", &[]).await?;
    ensure!(
        traversal.error_code().as_deref() == Some("path_rejected"),
        "an encoded traversal reaches the relay and is refused: {} {}",
        traversal.status,
        traversal.text()
    );
    if let Cli::Current = cli {
        // Every hostile path, with the CLI users get today (a function process each: about a minute).
        checks::hostile_paths_never_reach_anything(&shell, &fx).await.context("hostile paths")?;
    }

    let leaked = shell.get(&format!("/{BUILD_OUTPUT}"), &[]).await?;
    ensure!(
        leaked.status == 404 && !leaked.text().contains(BUILD_OUTPUT_MARKER),
        "a file under target/ is served: {} {}",
        leaked.status,
        leaked.text()
    );

    // A .env, read again at each request, replaces the project's variables
    // as a whole (vercel dev ignores them once .env has any): here the same
    // ones, but the config of another deployment, whose base URL differs.
    let preview = fx.preview_env().into_iter().find(|(k, _)| k == "TOKENRELAY_CONFIG").context("preview config")?;
    let dotenv: String = vars.iter().chain([&preview]).map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(site.join(".env"), dotenv)?;
    fx.api.clear_requests();
    let reply = shell.get("/api/relay/getty/echo/from-dotenv", &[]).await?;
    ensure!(reply.status == 200, "with .env: {} {}\n{}", reply.status, reply.text(), dev.logs.tail(20));
    let seen: Vec<_> = fx.api.requests().iter().map(|r| r.path().to_owned()).collect();
    let expected = format!("/v3{PREVIEW_BASE_PATH}/echo/from-dotenv");
    ensure!(
        seen == [expected.clone()],
        "the function did not take .env's config: upstream saw {seen:?}, not {expected}"
    );

    let calls = api.calls();
    ensure!(calls.iter().all(|c| c.answered), "calls the API stand-in did not answer:\n{}", api.unanswered());
    ensure!(calls.iter().any(|c| c.target.starts_with("/v3/env/pull/")), "the CLI pulled no variables: {calls:?}");
    fx.assert_no_secrets("the responses", &shell.transcript())?;
    println!("vercel dev ({}): ready after {ready:?}, all checks after {:?}", cli.package(), started.elapsed());
    Ok(())
}

#[tokio::test]
async fn vercel_dev_pinned_cli_serves_the_site_and_relays() {
    bounded(Duration::from_secs(900), serves_the_site_and_relays(Cli::Pinned)).await;
}

#[tokio::test]
async fn vercel_dev_current_cli_serves_the_site_and_relays() {
    bounded(Duration::from_secs(900), serves_the_site_and_relays(Cli::Current)).await;
}

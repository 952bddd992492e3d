//! `stand-in-vercel-api`: the calls of Vercel's REST API that `vercel dev`
//! makes in a linked project ([`testkit::VercelApi`]), for the JS tests.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use testkit::{VercelApi, VercelProject};

const USAGE: &str = "usage: stand-in-vercel-api [--listen ADDR] --project-id ID [--org-id ID] [--pull NAME]...
  --listen      address                       (default 127.0.0.1:0)
  --project-id  the linked project's id
  --org-id      the linked project's team id  (default team_tokenrelay_local)
  --framework   the project's framework setting (nextjs, ...; default none: Other)
  --pull NAME   serve variable NAME, taken from this process's environment, as a Development variable
The token the CLI must send is read from env STAND_IN_VERCEL_TOKEN.
Prints `url=<URL>` on stdout once serving; calls it does not answer go to stderr.";

fn parse_args() -> anyhow::Result<(SocketAddr, VercelProject)> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut project_id = None;
    let mut org_id = None;
    let mut framework = None;
    let mut pulled = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--project-id" => project_id = Some(value),
            "--org-id" => org_id = Some(value),
            "--framework" => framework = Some(value),
            "--pull" => pulled.push(value),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let token = std::env::var("STAND_IN_VERCEL_TOKEN").context("STAND_IN_VERCEL_TOKEN is not set")?;
    let mut project = VercelProject::new(&project_id.context("--project-id is required")?, &token);
    if let Some(org_id) = org_id {
        project.org_id = org_id;
    }
    if let Some(framework) = framework {
        project = project.framework(&framework);
    }
    for name in pulled {
        let value = std::env::var(&name).with_context(|| format!("--pull {name}: the variable is not set"))?;
        project = project.var(&name, &value);
    }
    Ok((listen.parse().context("--listen")?, project))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (addr, project) = parse_args()?;
    let api = VercelApi::start_on(project, addr).await?;
    println!("url={}", api.url());
    std::future::pending::<()>().await;
    Ok(())
}

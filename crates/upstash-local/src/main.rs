//! `upstash-local`: serve the Upstash REST protocol in front of a local Redis.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use upstash_local::UpstashLocal;

const USAGE: &str = "usage: upstash-local [--redis URL] [--listen ADDR] [--token TOKEN] [--forward-script-flags]
  --redis   Redis to forward to        (default redis://127.0.0.1:6379)
  --listen  address to serve on        (default 127.0.0.1:8079; port 0 picks a free one)
  --token   bearer token clients send  (or env UPSTASH_LOCAL_TOKEN)
  --forward-script-flags
            pass scripts to Redis unchanged, as serverless-redis-http does
            (Redis then refuses Upstash's allow-key-locking flag)
Prints `upstash-local ready url=<URL>` on stdout once serving.";

struct Args {
    redis: String,
    listen: SocketAddr,
    token: String,
    forward_script_flags: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut redis = "redis://127.0.0.1:6379".to_owned();
    let mut listen = "127.0.0.1:8079".to_owned();
    let mut token = std::env::var("UPSTASH_LOCAL_TOKEN").ok();
    let mut forward_script_flags = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--forward-script-flags" {
            forward_script_flags = true;
            continue;
        }
        let value = args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--redis" => redis = value,
            "--listen" => listen = value,
            "--token" => token = Some(value),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let token = token
        .filter(|t| !t.is_empty())
        .with_context(|| format!("a token is required (--token or UPSTASH_LOCAL_TOKEN)\n{USAGE}"))?;
    let listen =
        listen.parse().with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:8079"))?;
    Ok(Args { redis, listen, token, forward_script_flags })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "upstash_local=info".into()),
        )
        .init();
    let args = parse_args()?;
    let mut server = UpstashLocal::new(args.redis, args.token);
    if args.forward_script_flags {
        server = server.forward_script_flags();
    }
    let server = server.bind(args.listen).await?;
    println!("upstash-local ready url={}", server.url());
    std::future::pending::<()>().await;
    drop(server);
    Ok(())
}

//! `stand-in-api`: a local OAuth2 token endpoint and a third-party API that
//! accepts its tokens, for demos without the real upstream.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::{ApiServer, TokenServer, TokenServerConfig};

const USAGE: &str = "usage: stand-in-api [--token-listen ADDR] [--api-listen ADDR]
                    [--client-id ID] [--client-secret SECRET] [--lifetime-secs N]
  --token-listen   token endpoint address  (default 127.0.0.1:8081)
  --api-listen     API address             (default 127.0.0.1:8082)
  --client-id      accepted client id      (or env STAND_IN_CLIENT_ID, default test-client)
  --client-secret  accepted client secret  (or env STAND_IN_CLIENT_SECRET, default test-secret)
  --lifetime-secs  token lifetime          (default 1800)
Prints `token_url=<URL>` and `api_url=<URL>` on stdout once serving.";

fn parse_args() -> anyhow::Result<(SocketAddr, SocketAddr, TokenServerConfig)> {
    let mut token_listen = "127.0.0.1:8081".to_owned();
    let mut api_listen = "127.0.0.1:8082".to_owned();
    let mut id = std::env::var("STAND_IN_CLIENT_ID").unwrap_or_else(|_| "test-client".into());
    let mut secret = std::env::var("STAND_IN_CLIENT_SECRET").unwrap_or_else(|_| "test-secret".into());
    let mut lifetime = "1800".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--token-listen" => token_listen = value,
            "--api-listen" => api_listen = value,
            "--client-id" => id = value,
            "--client-secret" => secret = value,
            "--lifetime-secs" => lifetime = value,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let lifetime: u64 = lifetime.parse().with_context(|| format!("--lifetime-secs {lifetime:?} is not a number"))?;
    let config = TokenServerConfig::new(id, secret).lifetime(Duration::from_secs(lifetime));
    Ok((token_listen.parse().context("--token-listen")?, api_listen.parse().context("--api-listen")?, config))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (token_addr, api_addr, config) = parse_args()?;
    let tokens = TokenServer::start_on(config, token_addr).await?;
    let api = ApiServer::start_on(&tokens, api_addr).await?;
    println!("token_url={}", tokens.url());
    println!("api_url={}", api.url());
    std::future::pending::<()>().await;
    Ok(())
}

//! `tokenrelay-bench load URL [-c N] [-d SECS] [-w SECS] [-H 'Name: value']`:
//! the load generator on its own, against any `http://` URL.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper::header::HeaderValue;

use crate::load::{self, Target};
use crate::world::addr_of;

const USAGE: &str =
    "usage: tokenrelay-bench load URL [-c CONNECTIONS] [-d SECONDS] [-w WARMUP_SECONDS] [-H 'Authorization: VALUE']
  Sends GET URL back to back on CONNECTIONS keep-alive connections (default 8) for
  SECONDS (default 5) after WARMUP_SECONDS (default 1), then prints p50/p99 and throughput.";

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tokenrelay-bench load: {err:#}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let mut url = None;
    let (mut connections, mut seconds, mut warmup) = (8usize, 5.0f64, 1.0f64);
    let mut authorization = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-c" => connections = value()?.parse().context("-c takes a number")?,
            "-d" => seconds = value()?.parse().context("-d takes seconds")?,
            "-w" => warmup = value()?.parse().context("-w takes seconds")?,
            "-H" => {
                let header = value()?;
                let (name, v) = header.split_once(':').context("-H takes 'Name: value'")?;
                anyhow::ensure!(
                    name.trim().eq_ignore_ascii_case("authorization"),
                    "only -H 'Authorization: …' is supported"
                );
                authorization = Some(HeaderValue::from_str(v.trim())?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if url.is_none() => url = Some(other.to_owned()),
            other => anyhow::bail!("unexpected argument {other:?}"),
        }
    }
    let url = reqwest::Url::parse(&url.context("a URL is required")?)?;
    anyhow::ensure!(url.scheme() == "http", "only http:// URLs (the generator speaks plain HTTP/1.1)");
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut target = Target::new(addr_of(url.as_str())?, path);
    if let Some(value) = authorization {
        target = target.with_authorization(value);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let measured = runtime.block_on(load::run(
        &target,
        connections,
        Duration::from_secs_f64(warmup),
        Duration::from_secs_f64(seconds),
    ))?;
    let p = measured.samples.percentiles().context("no request completed")?;
    println!(
        "{} requests in {:.2} s on {connections} connections: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} not 2xx",
        measured.samples.len(),
        measured.elapsed.as_secs_f64(),
        measured.throughput(),
        p.p50.as_secs_f64() * 1e3,
        p.p99.as_secs_f64() * 1e3,
        p.max.as_secs_f64() * 1e3,
        measured.failed
    );
    Ok(())
}

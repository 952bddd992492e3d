//! The report's page: inline CSS and SVG, a system font, nothing fetched.
//! Totals carry `data-` attributes, so that a test (or a script of the
//! operator's) reads the same figures a person sees.

use std::fmt::Write as _;

use super::svg::{Series, burn_down, lines, stacked_bars};
use super::{DAY_HOURS, RouteRow, Upstream, escape, hits, latency, refusals, sum, tokens};
use crate::relay::meter::CALLS;
use crate::store::keys::meter::HOUR_MS;

const CALLS_COLOR: &str = "#1c7ed6";
const HITS_COLOR: &str = "#37b24d";
const REFUSED_COLOR: &str = "#f03e3e";
const FAILED_COLOR: &str = "#862e9c";
const P95_COLOR: &str = "#f59f00";

/// Everything the page shows.
pub(super) struct Report<'a> {
    pub(super) now_ms: u64,
    pub(super) hour: u64,
    pub(super) day: u64,
    pub(super) upstreams: Vec<Upstream>,
    /// Refusal codes over 7 days, most first.
    pub(super) codes: Vec<(String, u64)>,
    /// Routes over 7 days, busiest first.
    pub(super) routes: Vec<RouteRow<'a>>,
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1f2933}
header{background:#1f2933;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c5ccd3}
main{padding:20px 28px;max-width:1400px}section{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002;padding:16px 20px;margin:0 0 18px}
h2{margin:0 0 10px;font-size:17px}.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:12px}
.card{background:#f1f3f5;border-radius:6px;padding:8px 14px;min-width:120px}.card b{display:block;font-size:22px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}svg{width:100%;height:auto}
svg text.axis{font-size:10px;fill:#66707a}.legend{list-style:none;display:flex;gap:14px;padding:0;margin:4px 0 0;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 10px;border-bottom:1px solid #e3e6ea}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#66707a}
";

/// The whole page.
pub(super) fn render(report: &Report<'_>) -> String {
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>tokenrelay usage report</title><style>{STYLE}</style></head><body><header><h1>tokenrelay usage report</h1>\
<p>Counted by every instance's usage meter, up to {} UTC. Hours are UTC.</p></header><main>",
        utc(report.now_ms)
    );
    for u in &report.upstreams {
        upstream(&mut html, u, report);
    }
    tables(&mut html, report);
    html.push_str("</main></body></html>\n");
    html
}

/// One upstream's section.
fn upstream(html: &mut String, u: &Upstream, report: &Report<'_>) {
    let day = &u.hours[u.hours.len().saturating_sub(DAY_HOURS as usize)..];
    let total = sum(day.iter());
    let (fetched, failed) = tokens(&total);
    let _ = write!(
        html,
        "<section><h2>{name}</h2><div class=\"cards\" data-upstream=\"{name}\" data-calls=\"{calls}\" data-cache-hits=\"{hits}\" data-refusals=\"{refused}\">\
<div class=\"card\">Upstream calls, 24 h<b>{calls}</b></div><div class=\"card\">Cache answers, 24 h<b>{hits}</b></div>\
<div class=\"card\">Refusals, 24 h<b>{refused}</b></div><div class=\"card\">Token fetches / failures<b>{fetched} / {failed}</b></div>\
<div class=\"card\">Latency p50 / p95<b>{p50} / {p95}</b></div><div class=\"card\">Last token rotation<b>{rotated}</b></div></div><div class=\"grid\">",
        name = escape(&u.name),
        calls = total.get(CALLS),
        hits = hits(&total),
        refused = refusals(&total),
        p50 = ms(latency(&total, 0.5)),
        p95 = ms(latency(&total, 0.95)),
        rotated = u.token_rotated_ms.map_or_else(|| "none stored".to_owned(), |at| ago(report.now_ms, at)),
    );
    let first_hour = report.hour + 1 - day.len() as u64;
    let hour_labels: Vec<String> = (0..day.len() as u64).map(|i| format!("{:02}h", (first_hour + i) % 24)).collect();
    let answered = |t: &[super::Totals]| {
        [
            Series { name: "upstream calls", color: CALLS_COLOR, values: t.iter().map(|t| some(t.get(CALLS))).collect() },
            Series { name: "cache answers", color: HITS_COLOR, values: t.iter().map(|t| some(hits(t))).collect() },
            Series { name: "refusals", color: REFUSED_COLOR, values: t.iter().map(|t| some(refusals(t))).collect() },
        ]
    };
    html.push_str(&stacked_bars("Answers per hour, last 24 hours", &hour_labels, &answered(day)));
    let first_day = report.day + 1 - u.days.len() as u64;
    let day_labels: Vec<String> = (0..u.days.len() as u64).map(|i| date(first_day + i)).collect();
    html.push_str(&stacked_bars("Answers per day, last 7 days", &day_labels, &answered(&u.days)));
    let token_series = [
        Series { name: "token fetches (rotations)", color: CALLS_COLOR, values: day.iter().map(|t| some(tokens(t).0)).collect() },
        Series { name: "token failures", color: FAILED_COLOR, values: day.iter().map(|t| some(tokens(t).1)).collect() },
    ];
    html.push_str(&stacked_bars("Token rotations and failures, last 24 hours", &hour_labels, &token_series));
    let latency_series = [
        Series { name: "p50 (ms, bucket bound)", color: CALLS_COLOR, values: day.iter().map(|t| latency(t, 0.5).map(|v| v as f64)).collect() },
        Series { name: "p95 (ms, bucket bound)", color: P95_COLOR, values: day.iter().map(|t| latency(t, 0.95).map(|v| v as f64)).collect() },
    ];
    html.push_str(&lines("Upstream latency, last 24 hours", &hour_labels, &latency_series));
    for burn in &u.budgets {
        let b = &burn.status;
        let title = format!(
            "Budget{}: {} of {} left, resets in {}",
            b.route.as_deref().map_or_else(String::new, |r| format!(" of {r}")),
            b.left,
            b.requests,
            span(b.resets_in_ms)
        );
        html.push_str(&burn_down(&title, b.requests, &burn.points, &format!("window of {}", span(b.per_ms))));
    }
    html.push_str("</div></section>");
}

/// The top refusal codes and routes.
fn tables(html: &mut String, report: &Report<'_>) {
    html.push_str("<section><h2>Top refusal codes, last 7 days</h2><table><tr><th>Code</th><th class=\"n\">Answers</th></tr>");
    for (code, n) in &report.codes {
        let _ = write!(html, "<tr data-code=\"{c}\" data-count=\"{n}\"><td>{c}</td><td class=\"n\">{n}</td></tr>", c = escape(code));
    }
    if report.codes.is_empty() {
        html.push_str("<tr><td class=\"muted\" colspan=\"2\">No refusals.</td></tr>");
    }
    html.push_str("</table></section><section><h2>Top routes, last 7 days</h2><table><tr><th>Upstream</th><th>Route</th><th class=\"n\">Answers</th><th class=\"n\">Refusals</th></tr>");
    for r in &report.routes {
        let upstream = if r.upstream == crate::store::keys::meter::UNKNOWN { "(unknown upstream)" } else { r.upstream };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(upstream),
            escape(r.route),
            r.answered,
            r.refused
        );
    }
    html.push_str("</table></section>");
}

/// A count as a chart value.
fn some(n: u64) -> Option<f64> {
    Some(n as f64)
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("≤{v} ms"))
}

/// A duration in ms, in its largest whole unit.
fn span(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}

/// How long ago `at` was at `now` (ms since the epoch).
fn ago(now: u64, at: u64) -> String {
    format!("{} ago", span(now.saturating_sub(at) / 60_000 * 60_000))
}

/// Day number `day` as `YYYY-MM-DD`.
fn date(day: u64) -> String {
    humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(day * 86_400)).to_string()[..10]
        .to_owned()
}

/// `ms` as `YYYY-MM-DD HH:MM`.
fn utc(ms: u64) -> String {
    let text = humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms / HOUR_MS * HOUR_MS + ms % HOUR_MS / 60_000 * 60_000)).to_string();
    text[..16].replace('T', " ")
}

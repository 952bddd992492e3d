//! `tokenrelay report`: one self-contained HTML page (no script, font or
//! link to anything) of what the usage meter counted, with inline SVG
//! charts: calls, cache answers and refusals over the last 24 hours and 7
//! days, each budget's burn-down in its window, token rotations and
//! failures, the upstream's latency, and the top refusal codes and routes.
//! Read from the store like `status`, off the request path.

mod page;
mod svg;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::status::{BudgetStatus, UpstreamStatus, status_at};
use super::usage::{DAY_HOURS, hour_and_minute};
use crate::broker::Broker;
use crate::clock::millis;
use crate::error::{Error, Result};
use crate::relay::meter::read::{self, Scope, Totals};
use crate::relay::meter::{CACHE_KINDS, CALLS, LATENCY_FIELDS, REFUSED, TOKEN_FAILURES, TOKEN_FETCHES, quantile_ms};
use crate::store::keys::meter::{DAY_MS, HOUR_MS, UNKNOWN};

/// Hours in the longer view.
const WEEK_HOURS: u64 = 7 * DAY_HOURS;
/// Days in the longer view.
const WEEK_DAYS: u64 = 7;

/// The report of every relayed upstream, as of now.
pub async fn report(broker: &Broker) -> Result<String> {
    report_at(broker, SystemTime::now()).await
}

/// [`report`] as of `now`.
pub(crate) async fn report_at(broker: &Broker, now: SystemTime) -> Result<String> {
    let now_ms = millis(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let (hour, _) = hour_and_minute(now_ms);
    let day = now_ms / DAY_MS;
    let hours = hour.saturating_sub(WEEK_HOURS - 1)..hour + 1;
    let days = day.saturating_sub(WEEK_DAYS - 1)..day + 1;
    let statuses = status_at(broker, None, now).await?;
    let config = broker.config();
    let mut scopes: Vec<Scope<'_>> = vec![(UNKNOWN, None)];
    for u in config.upstreams().filter(|u| u.relay.is_some()) {
        scopes.push((u.name(), None));
        scopes.extend(u.relay.iter().flat_map(|r| &r.routes).map(|r| (u.name(), Some(r.pattern.as_str()))));
    }
    let spans = read::spans(broker.store(), &scopes, hours.clone(), days.clone())
        .await
        .map_err(|e| Error::StoreUnreadable { reason: e.to_string() })?;
    let mut upstreams = Vec::new();
    for status in statuses.iter().filter(|s| config.upstreams.get(&s.upstream).is_some_and(|u| u.relay.is_some())) {
        let own: Vec<(Option<&str>, &read::Span)> = scopes
            .iter()
            .zip(&spans)
            .filter(|((u, _), _)| *u == status.upstream)
            .map(|((_, route), span)| (*route, span))
            .collect();
        upstreams.push(Upstream::of(status, &own, hours.start, now_ms));
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut routes = Vec::new();
    for ((upstream, route), span) in scopes.iter().zip(&spans) {
        let week = sum(span.days.iter());
        for (field, n) in week.fields() {
            if let Some(code) = field.strip_prefix(REFUSED) {
                *codes.entry(code.to_owned()).or_default() += n;
            }
        }
        let answered = week.get(CALLS) + hits(&week) + refusals(&week);
        if answered > 0 {
            routes.push(RouteRow { upstream, route: route.unwrap_or("(no route)"), answered, refused: refusals(&week) });
        }
    }
    let mut codes: Vec<(String, u64)> = codes.into_iter().filter(|(_, n)| *n > 0).collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    routes.sort_by(|a, b| b.answered.cmp(&a.answered));
    Ok(page::render(&page::Report { now_ms, hour, day, upstreams, codes, routes }))
}

/// One upstream's series for the page.
pub(super) struct Upstream {
    name: String,
    /// Per hour of the last 7 days, oldest first.
    hours: Vec<Totals>,
    /// Per day of the last 7 days, oldest first.
    days: Vec<Totals>,
    budgets: Vec<Burn>,
    token_rotated_ms: Option<u64>,
}

/// A budget's burn-down: its status, and what was left after each hour of
/// its window that the meter saw (fraction of the window, calls left).
pub(super) struct Burn {
    status: BudgetStatus,
    points: Vec<(f64, f64)>,
}

/// A route in the top routes: answers over 7 days, refusals among them.
pub(super) struct RouteRow<'a> {
    upstream: &'a str,
    route: &'a str,
    answered: u64,
    refused: u64,
}

impl Upstream {
    /// `status`'s upstream over the spans of its scopes, whose hours start at `first_hour`.
    fn of(status: &UpstreamStatus, scopes: &[(Option<&str>, &read::Span)], first_hour: u64, now_ms: u64) -> Self {
        let hours: Vec<Totals> = (0..scopes.first().map_or(0, |(_, s)| s.hours.len()))
            .map(|i| sum(scopes.iter().filter_map(|(_, s)| s.hours.get(i))))
            .collect();
        let days = (0..scopes.first().map_or(0, |(_, s)| s.days.len()))
            .map(|i| sum(scopes.iter().filter_map(|(_, s)| s.days.get(i))))
            .collect();
        let budgets = status
            .budgets
            .iter()
            .map(|b| {
                let route_hours: Vec<Totals> = match &b.route {
                    None => hours.clone(),
                    Some(r) => scopes
                        .iter()
                        .find(|(route, _)| *route == Some(r.as_str()))
                        .map_or_else(Vec::new, |(_, s)| s.hours.clone()),
                };
                Burn { points: burn_points(b, &route_hours, first_hour, now_ms), status: b.clone() }
            })
            .collect();
        Upstream {
            name: status.upstream.clone(),
            hours,
            days,
            budgets,
            token_rotated_ms: status.token.as_ref().map(|t| t.rotated_at_ms),
        }
    }
}

/// What `budget` had left after each hour of its current window the meter
/// counted (hours from `first_hour`), then now by the budget's own counter.
fn burn_points(budget: &BudgetStatus, hours: &[Totals], first_hour: u64, now_ms: u64) -> Vec<(f64, f64)> {
    let per = budget.per_ms.max(1) as f64;
    let start = (now_ms + budget.resets_in_ms).saturating_sub(budget.per_ms);
    let mut used = 0;
    let mut points = Vec::new();
    for (i, totals) in hours.iter().enumerate() {
        let hour_end = (first_hour + i as u64 + 1) * HOUR_MS;
        // Only whole hours inside the window: a longer window's earlier hours are before the view.
        if hour_end <= start || hour_end > now_ms {
            continue;
        }
        used += totals.get(CALLS);
        points.push(((hour_end - start) as f64 / per, budget.requests.saturating_sub(used) as f64));
    }
    points.push(((now_ms - start.min(now_ms)) as f64 / per, budget.left as f64));
    points
}

/// The sum of `totals`.
fn sum<'a>(totals: impl Iterator<Item = &'a Totals>) -> Totals {
    totals.fold(Totals::default(), |mut all, t| {
        all.add(t);
        all
    })
}

/// Answers the cache gave, of every kind.
fn hits(t: &Totals) -> u64 {
    CACHE_KINDS.iter().map(|(_, f)| t.get(f)).sum()
}

/// Answers with an error, of every code.
fn refusals(t: &Totals) -> u64 {
    t.fields().filter(|(f, _)| f.starts_with(REFUSED)).map(|(_, n)| n).sum()
}

/// The latency quantile `q` of `t`'s calls, in ms.
fn latency(t: &Totals, q: f64) -> Option<u64> {
    quantile_ms(&LATENCY_FIELDS.map(|f| t.get(f)), q)
}

/// Tokens fetched and fetches failed in `t`.
fn tokens(t: &Totals) -> (u64, u64) {
    (t.get(TOKEN_FETCHES), t.get(TOKEN_FAILURES))
}

/// HTML-escapes `text` for an element or a quoted attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

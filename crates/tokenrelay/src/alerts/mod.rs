//! Alerts: events worth a person's attention (a budget 80% and 100% spent,
//! a usage spike, a spray over many addresses, probing, a failing token
//! endpoint, an upstream asking to wait, a leak in the build's output),
//! posted to the site's `[alerts] webhook` (Slack or Discord).
//!
//! - **Noticed** by whoever sees the figure ([`Alerts::notice`] and its
//!   helpers): the budget layer, the rate limit, the relay's refusals. A
//!   notice is in memory, costs no store call, and is dropped at once when
//!   this instance already knows the occurrence was sent or is waiting.
//! - **Sent once across instances** per occurrence (kind, upstream, route,
//!   window; see `store::keys::alert`): the sender takes the occurrence's
//!   lock (`SET NX PX`, one delivery's time) and reads its mark in the same
//!   round trip; with no mark it posts, then writes the mark for the rest of
//!   the window with a fenced write. An instance that finds the mark forgets
//!   the event.
//! - **Sent as a chore** of a request ([`Alerts::chore`]): it starts with
//!   the request, runs alongside it and is bounded by [`DELIVERY_TIMEOUT`]
//!   per event and [`PER_CHORE`] events, well within the chores' deadline,
//!   so nothing runs after the answer (see the README's *Serverless
//!   lifecycle*). A failed delivery is logged (kind, upstream, cause, never
//!   the URL), releases the lock and waits [`RETRY_PAUSE`] for a later
//!   request's chore, until its window is over.

mod event;
mod rules;
mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use event::AlertKind;
pub(crate) use event::{Event, Window};

use crate::broker::Broker;
use crate::clock::{millis, now_ms};
use crate::config::alerts::AlertSettings;
use crate::error::Error;
use crate::store::keys::alert::AlertKeys;
use crate::store::{Read, Write};

/// The most one delivery takes: the webhook's whole answer.
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a failed delivery waits before a later chore tries again.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Events one chore delivers at most; the rest wait for the next request.
pub(crate) const PER_CHORE: usize = 4;
/// Events an instance keeps waiting at most; past it new ones are dropped (logged).
const MAX_WAITING: usize = 64;
/// The window of the events that describe a state rather than a count
/// (the crowd, probing, a failing token endpoint, an upstream asking to
/// wait): one alert per hour while it lasts.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// How long a sent mark outlives its window: clocks a little apart still agree.
const MARK_GRACE: Duration = Duration::from_secs(60);

/// The site's alerts; does nothing without `[alerts]`. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Alerts {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    broker: Broker,
    settings: AlertSettings,
    state: Mutex<State>,
    /// Whether a chore of this instance is delivering.
    sending: AtomicBool,
    /// When the last usage spike check started (ms since the epoch).
    spike_checked: AtomicU64,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiting>,
    /// Occurrences this instance knows were sent, until their window ends (ms).
    settled: HashMap<AlertKeys, u64>,
    /// Refusals on unknown routes or rejected paths, per configured
    /// upstream (or none): (hour, count).
    probes: HashMap<Option<String>, (u64, u64)>,
}

/// An event not yet known to be sent.
struct Waiting {
    event: Event,
    keys: AlertKeys,
    /// Not tried again before this (ms since the epoch).
    due_ms: u64,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").field("configured", &self.shared.is_some()).finish_non_exhaustive()
    }
}

impl Alerts {
    /// The alerts of `broker`'s config: none without `[alerts]`.
    pub(crate) fn new(broker: &Broker) -> Self {
        let shared = broker.config().alerts.clone().map(|settings| {
            Arc::new(Shared {
                broker: broker.clone(),
                settings,
                state: Mutex::default(),
                sending: AtomicBool::new(false),
                spike_checked: AtomicU64::new(0),
            })
        });
        Self { shared }
    }

    /// Notes `event` for delivery, unless this instance knows it was sent or waits already.
    pub(crate) fn notice(&self, event: Event) {
        let Some(shared) = &self.shared else { return };
        let w = event.window;
        let keys = AlertKeys::new(
            shared.broker.store().namer(),
            event.kind.as_str(),
            event.upstream.as_deref(),
            event.route.as_deref(),
            w.length.as_secs(),
            w.number,
        );
        let mut state = shared.lock();
        if state.settled.contains_key(&keys) || state.waiting.iter().any(|x| x.keys == keys) {
            return;
        }
        if state.waiting.len() >= MAX_WAITING {
            tracing::warn!(kind = event.kind.as_str(), "too many alerts waiting; this one is dropped");
            return;
        }
        tracing::info!(kind = event.kind.as_str(), upstream = event.upstream.as_deref(), "alert noticed");
        state.waiting.push(Waiting { event, keys, due_ms: 0 });
    }

    /// A budget of `requests` calls per `window` (of `upstream`, or its
    /// `route`'s own) passed `percent` (80 or 100) of them: noticed by the
    /// one instance whose count in the store passed it
    /// ([`Crossing`](crate::relay::budgets) in the relay).
    pub(crate) fn budget(&self, upstream: &str, route: Option<&str>, percent: u8, requests: u64, window: Window) {
        if self.shared.is_none() {
            return;
        }
        let kind = if percent >= 100 { AlertKind::Budget100 } else { AlertKind::Budget80 };
        let event = Event::new(kind, Some(upstream), window).on_route(route);
        self.notice(event.figure("percent", u64::from(percent)).figure("requests", requests));
    }

    /// Whether this instance should check for a usage spike now: once per
    /// `[alerts] spike_check` (the caller then runs the check as a chore).
    pub(crate) fn spike_check_due(&self) -> bool {
        let Some(shared) = &self.shared else { return false };
        let now = now_ms();
        let last = shared.spike_checked.load(Ordering::Acquire);
        now.saturating_sub(last) >= millis(shared.settings.spike_check)
            && shared.spike_checked.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// `upstream` made `calls` upstream calls in `hour`, and `trailing` in
    /// the 24 hours before: a spike over `spike_factor` × their hourly mean
    /// and `spike_min_calls` is an event.
    pub(crate) fn usage(&self, upstream: &str, calls: u64, trailing: u64, hour: Window) {
        let Some(shared) = &self.shared else { return };
        let s = &shared.settings;
        if rules::is_spike(calls, trailing, s.spike_factor, s.spike_min_calls) {
            let event = Event::new(AlertKind::Spike, Some(upstream), hour);
            self.notice(event.figure("calls", calls).figure("trailing_calls", trailing));
        }
    }

    /// A request to `upstream` (`None`: to none the config knows) was
    /// refused for an unknown route or a rejected path. Counted per instance
    /// and hour.
    pub(crate) fn probed(&self, upstream: Option<&str>) {
        let Some(shared) = &self.shared else { return };
        let window = Window::at(now_ms(), HOUR);
        let refusals = {
            let mut state = shared.lock();
            let seen = state.probes.entry(upstream.map(str::to_owned)).or_insert((window.number, 0));
            if seen.0 != window.number {
                *seen = (window.number, 0);
            }
            seen.1 += 1;
            seen.1
        };
        let threshold = shared.settings.probing_refusals;
        if rules::is_probing(refusals, threshold) {
            let event = Event::new(AlertKind::Probing, upstream, window);
            self.notice(event.figure("refusals", refusals).figure("threshold", threshold));
        }
    }

    /// `upstream`'s token could not be had: its endpoint fails, and its cooldown runs.
    pub(crate) fn token_failing(&self, upstream: &str) {
        if self.shared.is_some() {
            self.notice(Event::new(AlertKind::TokenFailing, Some(upstream), Window::at(now_ms(), HOUR)));
        }
    }

    /// `upstream`'s token was minted with its previous secret: the endpoint
    /// refused the current one.
    pub(crate) fn previous_secret(&self, upstream: &str) {
        if self.shared.is_some() {
            self.notice(Event::new(AlertKind::PreviousSecret, Some(upstream), Window::at(now_ms(), HOUR)));
        }
    }

    /// `upstream` (its `route`, for a route's own cooldown) asked to wait `wait`.
    pub(crate) fn upstream_wait(&self, upstream: &str, route: Option<&str>, wait: Duration) {
        if self.shared.is_some() {
            let event = Event::new(AlertKind::UpstreamWait, Some(upstream), Window::at(now_ms(), HOUR)).on_route(route);
            self.notice(event.figure("wait_secs", wait.as_secs()));
        }
    }

    /// A rate limit of `upstream` met more than `tracked` addresses in one window.
    pub(crate) fn crowd(&self, upstream: &str, tracked: u64) {
        if self.shared.is_some() {
            let event = Event::new(AlertKind::Crowd, Some(upstream), Window::at(now_ms(), HOUR));
            self.notice(event.figure("tracked_clients", tracked));
        }
    }

    /// The delivery of the events due, as a chore of the request that calls
    /// this; `None` when nothing is due or another chore is delivering.
    pub(crate) fn chore(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let shared = self.shared.as_ref()?;
        let now = now_ms();
        if !shared.lock().waiting.iter().any(|w| w.due_ms <= now) {
            return None;
        }
        if shared.sending.swap(true, Ordering::AcqRel) {
            return None;
        }
        let shared = shared.clone();
        Some(async move {
            let _done = Sending(&shared.sending);
            shared.deliver_due().await;
        })
    }
}

/// Clears `sending` however the delivery ends, cancelled included.
struct Sending<'a>(&'a AtomicBool);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How one try of one occurrence ended.
enum Outcome {
    /// Delivered, by this instance or another: never again in its window.
    Settled,
    /// Another instance delivers it now, or this one failed: later.
    Later,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tries the events due, at most [`PER_CHORE`]; forgets those whose window is over.
    async fn deliver_due(&self) {
        let now = now_ms();
        let due: Vec<(Event, AlertKeys)> = {
            let mut state = self.lock();
            state.settled.retain(|_, ends| *ends > now);
            state.waiting.retain(|w| {
                let live = w.event.window.end_ms() > now;
                if !live {
                    tracing::warn!(
                        kind = w.event.kind.as_str(),
                        "an alert was not delivered within its window; dropped"
                    );
                }
                live
            });
            state
                .waiting
                .iter()
                .filter(|w| w.due_ms <= now)
                .take(PER_CHORE)
                .map(|w| (w.event.clone(), w.keys.clone()))
                .collect()
        };
        for (event, keys) in due {
            let outcome = self.deliver_once(&event, &keys).await;
            let mut state = self.lock();
            match outcome {
                Outcome::Settled => {
                    state.waiting.retain(|w| w.keys != keys);
                    state.settled.insert(keys, event.window.end_ms());
                }
                Outcome::Later => {
                    let due_ms = now_ms().saturating_add(millis(RETRY_PAUSE));
                    state.waiting.iter_mut().filter(|w| w.keys == keys).for_each(|w| w.due_ms = due_ms);
                }
            }
        }
    }

    /// Sends `event` unless another instance did or does: see the module's list.
    async fn deliver_once(&self, event: &Event, keys: &AlertKeys) -> Outcome {
        let (kind, upstream) = (event.kind.as_str(), event.upstream.as_deref());
        let store = self.broker.store();
        let lease = DELIVERY_TIMEOUT + self.broker.config().store.timeout * 2;
        let (lease, mut mark) = match store.take(&keys.lock, lease, &[Read::plain(&keys.sent)]).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(kind, upstream, %error, "alert not sent: the store is unreachable; tried again later");
                return Outcome::Later;
            }
        };
        let Some(lease) = lease else { return Outcome::Later };
        if mark.plain().is_some() {
            lease.release().await;
            return Outcome::Settled;
        }
        if let Err(error) = webhook::post(self.broker.http(), &self.settings.webhook, event, DELIVERY_TIMEOUT).await {
            tracing::warn!(kind, upstream, %error, "alert not delivered; a later request tries again");
            lease.release().await;
            return Outcome::Later;
        }
        tracing::info!(kind, upstream, "alert delivered");
        let ttl = Duration::from_millis(event.window.end_ms().saturating_sub(now_ms())) + MARK_GRACE;
        if let Err(error) = store.put_fenced(&keys.sent, Write::Plain("1"), ttl, lease).await {
            tracing::warn!(kind, upstream, %error, "alert delivered, but not marked in the store: another instance may send it again");
        }
        Outcome::Settled
    }
}

/// Posts a test event to `broker`'s webhook now (`tokenrelay alert test`).
pub async fn send_test(broker: &Broker) -> crate::Result<()> {
    send_now(broker, Event::new(AlertKind::Test, None, Window::at(now_ms(), Duration::from_secs(1)))).await
}

/// Whether `broker`'s config has `[alerts]`.
pub fn configured(broker: &Broker) -> bool {
    broker.config().alerts.is_some()
}

/// Posts that the build's leak scan found `findings` (each "file: variable",
/// never a value) in the output. Sent at once: the build runs once, with no
/// request to carry a chore.
pub async fn send_leak(broker: &Broker, findings: &[String]) -> crate::Result<()> {
    let mut event = Event::new(AlertKind::Leak, None, Window::at(now_ms(), HOUR));
    event.figures.push(("findings", findings.len() as u64));
    event.notes = findings.to_vec();
    send_now(broker, event).await
}

/// Posts `event` once, now, without the store's dedupe.
async fn send_now(broker: &Broker, event: Event) -> crate::Result<()> {
    let failed = |reason: String| Error::AlertFailed { reason };
    let settings =
        broker.config().alerts.as_ref().ok_or_else(|| failed("no [alerts] webhook in the config".to_owned()))?;
    webhook::post(broker.http(), &settings.webhook, &event, DELIVERY_TIMEOUT)
        .await
        .map_err(|e| failed(format!("{e} (webhook from ${})", settings.webhook.var)))
}

#[cfg(test)]
mod tests;

//! Limits that are ceilings ([`Admission::OutOfAllowance`], the budgets):
//! no bucket ever gets more than its limit in a window, however many
//! instances and however fast the burst, because nothing is admitted that
//! was not counted in the store first.
//!
//! An instance admits in memory only out of an *allowance*: calls it
//! counted in the store ahead of time and has not spent yet. The store adds
//! every addition in turn (`INCRBY` returns the new total), so the part of
//! an addition that still fits under the limit is that instance's alone,
//! and what does not fit is never granted. A call that finds no allowance
//! is counted in the store before it is decided, in the round trip its path
//! makes anyway where it makes one (a cold request's count, through
//! `call::ColdPlan`), else in one of its own.
//!
//! Far from the limit, each sync (a chore, at most one an interval) counts
//! ahead what the instance spent since its last one, times
//! [`PACE_INTERVALS`]: on a steady pace the warm path makes no store call.
//! Near the limit, an allowance is at most [`ALLOWANCE_SHARE`]th of what is
//! left, so the last calls of a window are counted one at a time. Calls an
//! instance counted ahead and never made (it went idle, or was frozen for
//! good) are lost to the window: the count errs high, the calls low.
//!
//! Without the store, an instance decides alone on its own count for an
//! interval at a time (at most `N × requests` for `N` instances), and adds
//! what it admitted with its next sync.

use std::sync::Arc;

use super::{Bucket, Counter, Counters, Tally, Verdict, interval_ms, tracked};
use crate::relay::error::RelayError;

/// How an instance may admit one more in a bucket without asking the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// On a shared count it learned less than an interval ago (rate limits):
    /// the other instances' admissions of that interval may add to it.
    OnRecentCount,
    /// Only out of an allowance it counted in the store beforehand (budgets):
    /// never past the limit.
    OutOfAllowance,
}

/// At most this fraction of what is left of a window is counted ahead by one
/// instance at a time: with fewer than this many calls left, each call is
/// counted on its own.
pub(super) const ALLOWANCE_SHARE: u64 = 8;

/// An instance counts ahead what it spent since its last sync this many
/// times over, so that a pace that rises fourfold between syncs (traffic
/// that comes in bursts) still finds an allowance.
pub(super) const PACE_INTERVALS: u64 = 4;

/// How many calls to count ahead for `tally`'s bucket of a ceiling of
/// `limit`: the call that asks (`asks`), plus what keeps the allowance at
/// [`PACE_INTERVALS`] times the pace since the last sync, within
/// [`ALLOWANCE_SHARE`]th of what is left.
pub(super) fn ahead(limit: u64, tally: &Tally, asks: bool) -> u64 {
    let left = limit.saturating_sub(tally.known + tally.pending);
    let wanted = (PACE_INTERVALS * tally.spent).saturating_sub(tally.allowance);
    wanted.min(left / ALLOWANCE_SHARE) + u64::from(asks)
}

/// Of `reserved` calls counted ahead in an addition that brought the shared
/// count to `total`, those within `limit`.
pub(super) fn granted(limit: u64, reserved: u64, total: u64) -> u64 {
    reserved.min(limit.saturating_sub(total.saturating_sub(reserved)))
}

impl Counters {
    /// [`judge`](Counters::judge) for a ceiling: out of the allowance, else
    /// known to be spent, else counted in the store first (or, while the
    /// store failed less than an interval ago, on this instance's own count).
    pub(super) fn judge_out_of_allowance(
        &self,
        counter: &Arc<Counter>,
        bucket: Bucket,
        now: u64,
    ) -> Result<Verdict, RelayError> {
        let window = now / counter.window_ms();
        let limit = counter.limit.requests;
        let (bucket, used_up) = {
            let mut tallies = counter.lock();
            let bucket = tracked(&mut tallies, bucket, window, counter.limit.bound.as_ref());
            let tally = Tally::current(&mut tallies, bucket, window);
            let alone = tally.alone && now.saturating_sub(tally.learned_at) < interval_ms();
            let from_allowance = tally.allowance > 0;
            if tally.spend(limit, alone) {
                // Alone, the one that uses up the window tells the others at once.
                (bucket, Some(!from_allowance && tally.known + tally.pending >= limit))
            } else if tally.known + tally.pending >= limit {
                return Err(counter.refusal(now));
            } else {
                (bucket, None)
            }
        };
        match used_up {
            Some(true) => Ok(Verdict::Admitted(self.sync_now())),
            Some(false) => Ok(Verdict::Admitted(self.sync_if_due(now))),
            None => Ok(Verdict::Count(self.counting(now, Some((counter.clone(), bucket, window))))),
        }
    }
}

impl Tally {
    /// Spends one of the allowance, or with `alone` (the store unreachable)
    /// one more of this instance's own count; false when neither has room.
    pub(super) fn spend(&mut self, limit: u64, alone: bool) -> bool {
        if self.allowance > 0 {
            self.allowance -= 1;
        } else if alone && self.known + self.pending < limit {
            self.pending += 1;
        } else {
            return false;
        }
        self.spent += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_fits_under_the_limit_is_granted() {
        assert_eq!(granted(20, 3, 10), 3, "far from the limit, all of it");
        assert_eq!(granted(20, 3, 21), 2, "the addition that crosses the limit gets what is left");
        assert_eq!(granted(20, 1, 21), 0, "past it, nothing");
        assert_eq!(granted(20, 0, 25), 0);
    }

    #[test]
    fn the_allowance_follows_the_pace_and_shrinks_to_single_calls_near_the_end() {
        let steady = Tally { spent: 50, allowance: 30, known: 100, ..Tally::default() };
        assert_eq!(ahead(10_000, &steady, false), 170, "four intervals of the pace, less what is left of it");
        assert_eq!(ahead(10_000, &steady, true), 171, "and the call that asks");
        let near = Tally { spent: 50, known: 9_990, ..Tally::default() };
        assert_eq!(ahead(10_000, &near, false), 1, "an eighth of the 10 left");
        let last = Tally { spent: 50, known: 9_995, ..Tally::default() };
        assert_eq!(ahead(10_000, &last, true), 1, "the last few: one call at a time");
        assert_eq!(ahead(10_000, &Tally::default(), true), 1, "no pace yet: only the call that asks");
    }
}

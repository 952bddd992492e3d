//! A timer that is always pending, so that a request's deadline costs no
//! system call.
//!
//! Tokio's timer wakes its own driver (a write to an eventfd, then one more
//! pass of the event loop) whenever a task registers a deadline earlier than
//! the one the driver last went to sleep for, and "none" counts as later than
//! any (tokio-rs/tokio#5207). An idle relay has no timer pending, so every
//! request's `relay.timeout` paid that wake-up. With this task's timer
//! pending, renewed every [`PERIOD`], any deadline further off than that needs
//! no wake-up (`relay.timeout` is 10 s unless set). Per relayed request, the
//! relay's system calls went from 8 to 7 and the JS handler's writes from 4 to 3
//! (`strace -c -f`, through `tokenrelay-bench profile --before/--after`).

use std::time::Duration;

/// How often the anchor's timer is renewed: deadlines further off than this
/// are registered without waking the driver.
const PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer pending for as long as the runtime runs; spawn it once on
/// the runtime that serves the relay. It never returns.
pub async fn anchor_timers() {
    loop {
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// The write system calls this thread has made (`syscw`): the driver's
    /// wake-up is one, made by the thread that registers the timer.
    fn writes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("task IO accounting");
        io.lines().find_map(|l| l.strip_prefix("syscw: ")).and_then(|n| n.parse().ok()).expect("syscw")
    }

    /// The writes that registering a 10 s deadline costs, right after the
    /// driver has looked at its timers (as it does when a request wakes it);
    /// what a request's `relay.timeout` costs.
    pub(crate) async fn writes_to_register_a_deadline() -> u64 {
        tokio::task::yield_now().await;
        let before = writes();
        assert!(tokio::time::sleep(Duration::from_secs(10)).now_or_never().is_none(), "registered, pending");
        writes() - before
    }

    #[tokio::test]
    async fn with_the_anchor_a_deadline_wakes_nothing() {
        assert_eq!(writes_to_register_a_deadline().await, 1, "no anchor: the driver is woken (tokio-rs/tokio#5207)");
        tokio::spawn(anchor_timers());
        tokio::task::yield_now().await;
        assert_eq!(writes_to_register_a_deadline().await, 0, "the anchor's timer is pending");
    }
}

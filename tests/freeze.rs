//! The compiled Vercel function (`api/relay.rs`) with every instance frozen
//! (SIGSTOP) once it has answered and thawed (SIGCONT) for its next request,
//! as Vercel may suspend it after its answer: the checklist every shell
//! passes, and the scenarios whose figures freezing changes
//! (`relay_e2e::scenarios`). `cargo test --test freeze -- --nocapture` prints
//! the figures.

relay_e2e::frozen_suite!(Platform::Vercel(env!("CARGO_BIN_EXE_relay").into()));

/// The answer ends before its chores; the instance is frozen at `end`, after them.
#[tokio::test]
async fn a_stale_hit_and_a_refresh_window_request_end_as_fast_as_a_fresh_hit() {
    let platform = platform();
    let answers = relay_e2e::answers_end_first::answers_end_first(&platform);
    bounded(Duration::from_secs(60), measured(answers)).await;
}

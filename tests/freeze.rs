//! The compiled Vercel function (`api/relay.rs`) with every instance frozen
//! (SIGSTOP) once it has answered and thawed (SIGCONT) for its next request,
//! as Vercel may suspend it after its answer: the checklist every shell
//! passes, and the scenarios whose figures freezing changes
//! (`relay_e2e::scenarios`). `cargo test --test freeze -- --nocapture` prints
//! the figures.

relay_e2e::frozen_suite!(Platform::Vercel(env!("CARGO_BIN_EXE_relay").into()));

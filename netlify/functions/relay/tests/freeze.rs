//! The Netlify function as AWS Lambda runs it: a custom-runtime bootstrap
//! polling a Lambda Runtime API stand-in for API Gateway v1 events, frozen
//! (SIGSTOP) the moment it posts its response and thawed (SIGCONT) for its
//! next event: the checklist every shell passes, and the scenarios whose
//! figures freezing changes (`relay_e2e::scenarios`).
//! `cargo test -p tokenrelay-netlify --test freeze -- --nocapture` prints the figures.

relay_e2e::frozen_suite!(Platform::Netlify(env!("CARGO_BIN_EXE_tokenrelay-netlify").into()));

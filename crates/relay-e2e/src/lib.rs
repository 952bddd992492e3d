//! End-to-end checks of the `/api/relay` function, shared by the platform
//! suites (the compiled Vercel binary, the Netlify function under
//! `netlify dev`) so that every shell is held to the same rules.
//!
//! A [`Fixture`] starts what a function talks to (Redis behind the Upstash
//! REST protocol, a token endpoint, the API, and an "evil" server nothing may
//! reach) and writes the config; a suite starts its platform's function with
//! [`Fixture::env`] and runs the [`checks`] against a [`Shell`], a raw HTTP
//! client that sends hostile paths byte for byte.
//!
//! [`frozen`] runs the same checks through instances frozen between requests,
//! as serverless platforms run them, and [`scenarios`] measures what freezing
//! changes (token rotation, rate limits, stale-while-revalidate, cold path);
//! [`answers_end_first`] holds that on Vercel the visitor's answer ends before
//! the request's chores.

pub mod answers_end_first;
pub mod budget_checks;
pub mod cache_checks;
pub mod caller_checks;
pub mod checks;
mod fixture;
pub mod frozen;
mod http;
pub mod meter_checks;
pub mod scenarios;
pub mod secret_checks;

pub use fixture::{
    ALLOWED_ORIGIN, BUDGETED_CALLS, CEILING_CALLS, Fixture, LIMITED_REQUESTS, METERED_REQUESTS, PREVIEW_BASE_PATH,
    TokenSchedule, UpstashServer,
};
pub use http::{Reply, Shell, Visitor};
pub use testkit::freeze::Freeze;
pub use testkit::{Logs, bounded};

//! Shared test support for the workspace.
//!
//! Every piece is real and local: [`RedisServer`] is a throwaway `redis-server`
//! process, [`Upstash`] runs the Upstash REST protocol in-process in front of it,
//! [`TokenServer`] is an OAuth2 client-credentials token endpoint and
//! [`ApiServer`] a third-party API that accepts only that server's live tokens;
//! [`Siteverify`] stands in for Cloudflare Turnstile's token check, and
//! [`WebhookReceiver`] for a Slack or Discord incoming webhook.
//! [`VercelApi`] for the few calls of Vercel's REST API that `vercel dev` makes.
//! All of them listen on free ports on 127.0.0.1 and stop when dropped.
//!
//! The `tokenrelay.toml` a test runs with is built with [`config::SiteConfig`],
//! and its encryption key made by [`base64_key`].

mod api_server;
pub mod config;
mod encryption_key;
mod flood;
pub mod freeze;
mod logs;
mod program;
mod redis_server;
mod serve;
mod siteverify;
mod token_server;
mod upstash;
mod vercel_api;
mod wait;
mod webhook;

pub use api_server::{ApiServer, REVEALED, RecordedRequest};
pub use encryption_key::base64_key;
pub use flood::Flood;
pub use logs::Logs;
pub use program::{program_on_path, toolchain_env};
pub use redis_server::RedisServer;
pub use siteverify::Siteverify;
pub use token_server::{Behavior, ExpiresIn, Hold, TokenServer, TokenServerConfig};
pub use upstash::Upstash;
pub use vercel_api::{VercelApi, VercelCall, VercelProject};
pub use wait::{bounded, free_port, wait_until};
pub use webhook::WebhookReceiver;

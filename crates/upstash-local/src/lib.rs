//! An Upstash-Redis-REST-compatible HTTP server in front of a real Redis.
//!
//! Speaks the subset of the Upstash REST protocol that the official clients use:
//! `POST /` with a JSON command array, `POST /pipeline` and `POST /multi-exec`
//! with arrays of commands, bearer-token authentication, and the
//! `Upstash-Encoding: base64` reply encoding. Every command is forwarded to Redis
//! as-is, so behaviour (TTLs, scripts, errors) is Redis's own, but for Upstash's
//! `allow-key-locking` script flag, which Redis refuses: it is dropped, or
//! forwarded as serverless-redis-http forwards it with
//! [`UpstashLocal::forward_script_flags`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = upstash_local::start(listener, "redis://127.0.0.1:6379", "secret".into()).await?;
//! println!("UPSTASH_REDIS_REST_URL={}", server.url());
//! # Ok(()) }
//! ```

mod command;
mod reply;
mod server;
mod store;

pub use server::{Handle, UpstashLocal, start};

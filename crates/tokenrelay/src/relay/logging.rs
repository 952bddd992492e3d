//! The log setup every platform shell uses (feature `shell`).

use tracing_subscriber::EnvFilter;

/// JSON logs, one object per line, on stderr; the level comes from
/// `RUST_LOG` (default `info`). stderr, because stdout belongs to the
/// platform: `vercel_runtime` announces its port there, and Netlify's local
/// functions proxy reads the function's answer from its own.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests, embedding) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

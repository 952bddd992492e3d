//! The Netlify function behind `/api/relay/*` (`netlify.toml` rewrites it to
//! `/.netlify/functions/relay/:splat`): all of it is `tokenrelay::netlify`.

/// The site's `tokenrelay.toml` as it was at build time, empty without one (see build.rs).
const EMBEDDED_CONFIG: &str = include_str!(concat!(env!("OUT_DIR"), "/tokenrelay.toml"));

fn main() -> Result<(), tokenrelay::netlify::Error> {
    tokenrelay::netlify::run(EMBEDDED_CONFIG)
}

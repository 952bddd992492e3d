//! The prebuilt Netlify function shipped in the npm package
//! `tokenrelay-linux-x64-gnu` (built by `scripts/build-linux.sh bin -p
//! tokenrelay-netlify --bin netlify-relay`): `main.rs` with no config compiled
//! in, since it is built once for every site. The build plugin appends the
//! site's `tokenrelay.toml` to its copy (see `tokenrelay::netlify::run`).

fn main() -> Result<(), tokenrelay::netlify::Error> {
    tokenrelay::netlify::run("")
}

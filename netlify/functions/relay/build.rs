//! Embeds the site's `tokenrelay.toml` in the binary. On Netlify only the
//! compiled binary is deployed (zipped as the Lambda `bootstrap`), so the
//! config must travel inside it. It holds no secrets: those are `{ env = … }`
//! references resolved at run time. Without the file the binary embeds
//! nothing and reads `TOKENRELAY_CONFIG` (or `./tokenrelay.toml`) at run time.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let config = manifest.join("../../../tokenrelay.toml");
    // A missing file makes cargo rerun this script on every build, which also
    // notices when the file appears.
    println!("cargo::rerun-if-changed={}", config.display());
    let text = std::fs::read_to_string(&config).unwrap_or_default();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("tokenrelay.toml");
    if let Err(e) = std::fs::write(&out, text) {
        println!("cargo::error=cannot write {}: {e}", out.display());
    }
}

//! What the Netlify build plugin needs to place the prebuilt relay function:
//! the site's config appended to the binary's copy ([`tokenrelay::appended`],
//! the format the function reads back), and where the relay answers.

use std::path::Path;

use napi_derive::napi;
use tokenrelay::relay::MOUNT;

use crate::error::{AddonCode, AddonError};

/// Appends the config file at `config_path` to the executable at `binary`
/// (a copy of the prebuilt relay), which reads it at start.
#[napi(js_name = "appendConfig")]
pub async fn js_append_config(binary: String, config_path: String) -> napi::Result<()> {
    append_config(Path::new(&binary), Path::new(&config_path)).map_err(AddonError::into_napi)
}

fn append_config(binary: &Path, config_path: &Path) -> Result<(), AddonError> {
    let config = std::fs::read(config_path)
        .map_err(|e| tokenrelay::Error::ConfigUnreadable { file: config_path.to_owned(), source: e.into() })?;
    tokenrelay::appended::append(binary, &config).map_err(|e| {
        AddonError::new(
            AddonCode::FunctionNotPlaced.as_str(),
            format!("{}: cannot append the config: {e}", binary.display()),
        )
    })
}

/// Where the relay answers on every platform function: `/api/relay`.
#[napi(js_name = "relayMount")]
pub fn relay_mount() -> String {
    MOUNT.to_owned()
}

/// Whether a route pattern of the site (a Netlify redirect's `from`, a
/// Vercel rewrite's `source`) covers the relay's paths: [`MOUNT`] itself or
/// a path under it, not one that merely starts with the same letters
/// (`/api/relay-status` is another route of the site).
#[napi(js_name = "claimsMount")]
pub fn js_claims_mount(pattern: String) -> bool {
    tokenrelay_site::claims_mount(&pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_appended_and_failures_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (binary, config) = (dir.path().join("relay"), dir.path().join("tokenrelay.toml"));
        std::fs::write(&binary, b"\x7fELF").unwrap();
        std::fs::write(&config, "[upstreams.x]\n").unwrap();
        append_config(&binary, &config).unwrap();
        assert_eq!(tokenrelay::appended::read(&binary).unwrap().as_deref(), Some("[upstreams.x]\n"));

        let err = append_config(&binary, &dir.path().join("missing.toml")).unwrap_err();
        assert_eq!(err.code(), "config_unreadable");
        let err = append_config(&dir.path().join("no-binary"), &config).unwrap_err();
        assert_eq!(err.code(), "function_not_placed");
        assert!(err.message().contains("no-binary: cannot append the config"), "{}", err.message());
    }
}

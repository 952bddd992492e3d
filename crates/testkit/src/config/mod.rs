//! The `tokenrelay.toml` a test runs with, built from types instead of
//! copied text: every rig describes its world with [`SiteConfig`] and renders
//! it, so a misspelt field is a compile error, not a config the relay rejects
//! at run time (or, worse, a default silently kept).
//!
//! ```
//! use std::time::Duration;
//! use testkit::config::{SiteConfig, UpstreamConfig, env, oauth2, route};
//!
//! let toml = SiteConfig::new()
//!     .relay_settings(|r| r.allowed_origins(["https://site.example"]))
//!     .upstream(
//!         UpstreamConfig::new("getty", "https://api.example.com/v3", oauth2("https://auth.example.com/token", "ID", "SECRET"))
//!             .relay(|r| r.header("Api-Key", env("ID")).route(route("/search/images").methods(["GET"]))),
//!     )
//!     .render();
//! assert!(toml.contains("[upstreams.getty.relay]"));
//! ```
//!
//! testkit cannot depend on tokenrelay (whose tests depend on testkit), so
//! that the rendered text parses is checked in tokenrelay's own tests.

mod render;
mod route;
mod settings;
mod upstream;

use std::path::Path;

use anyhow::Context as _;

pub use route::{Caller, RouteCache, RouteConfig, Turnstile, route};
pub use settings::{AlertSettings, Budget, CacheSettings, Per, RateLimit, RelaySettings, StoreSettings};
pub use upstream::{Inject, JsonToken, OAuth2Token, Param, Token, UpstreamConfig, UpstreamRelay, env, oauth2};

use render::Table;

/// A whole `tokenrelay.toml`: `[cache]`, `[store]`, `[relay]`, `[alerts]` and the upstreams.
#[derive(Clone, Debug, Default)]
pub struct SiteConfig {
    cache: CacheSettings,
    store: StoreSettings,
    relay: RelaySettings,
    alerts: AlertSettings,
    upstreams: Vec<UpstreamConfig>,
}

impl SiteConfig {
    /// No upstreams, every setting at the relay's default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the `[cache]` settings.
    pub fn cache(mut self, f: impl FnOnce(CacheSettings) -> CacheSettings) -> Self {
        self.cache = f(self.cache);
        self
    }

    /// Changes the `[store]` settings.
    pub fn store(mut self, f: impl FnOnce(StoreSettings) -> StoreSettings) -> Self {
        self.store = f(self.store);
        self
    }

    /// Changes the site-wide `[relay]` settings.
    pub fn relay_settings(mut self, f: impl FnOnce(RelaySettings) -> RelaySettings) -> Self {
        self.relay = f(self.relay);
        self
    }

    /// Changes the `[alerts]` settings.
    pub fn alerts(mut self, f: impl FnOnce(AlertSettings) -> AlertSettings) -> Self {
        self.alerts = f(self.alerts);
        self
    }

    /// Adds `upstream`, or replaces the one of the same name.
    pub fn upstream(mut self, upstream: UpstreamConfig) -> Self {
        self.upstreams.retain(|u| u.name() != upstream.name());
        self.upstreams.push(upstream);
        self
    }

    /// Changes the upstream called `name`.
    ///
    /// # Panics
    /// If there is none: a rig asked for an upstream it never added.
    pub fn edit_upstream(mut self, name: &str, f: impl FnOnce(UpstreamConfig) -> UpstreamConfig) -> Self {
        let i = self.upstreams.iter().position(|u| u.name() == name);
        let i = i.unwrap_or_else(|| panic!("the config has no upstream {name:?}"));
        let upstream = self.upstreams.remove(i);
        self.upstreams.insert(i, f(upstream));
        self
    }

    /// The TOML text `tokenrelay.toml` holds.
    pub fn render(&self) -> String {
        let mut root = Table::default();
        root.table("cache", self.cache.to_table());
        root.table("store", self.store.to_table());
        root.table("relay", self.relay.to_table());
        root.table("alerts", self.alerts.to_table());
        let mut upstreams = Table::default();
        for upstream in &self.upstreams {
            upstreams.set(upstream.name(), upstream.to_table());
        }
        root.table("upstreams", upstreams);
        root.into_document()
    }

    /// Renders the config into `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.render()).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests;

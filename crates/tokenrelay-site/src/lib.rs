//! # tokenrelay-site
//!
//! What tokenrelay does to a site at build time, as plain Rust; the npm
//! addon (`crates/tokenrelay-node`) only converts its JS objects to and from
//! these types.
//!
//! - [`Site`]: a site's directory and environment, resolved once from the
//!   options every build-time call takes (process environment, overrides,
//!   the site's `.env`);
//! - [`init()`]: adds tokenrelay to a site for Netlify or Vercel, merging into
//!   its existing files, all or nothing (the `tokenrelay init` command);
//! - [`scan_for_leaks`]: finds token, credential and store secret values in a
//!   build's output, naming the file and variable only;
//! - [`claims_mount`]: whether a route of the site covers the relay's paths.
//!
//! ```no_run
//! use tokenrelay_site::{InitOptions, Platform, init};
//!
//! let report = init(&InitOptions { platform: Some(Platform::Vercel), ..InitOptions::default() })?;
//! for change in &report.changes {
//!     println!("{} {}: {}", change.action.as_str(), change.file, change.summary);
//! }
//! # Ok::<(), tokenrelay_site::Error>(())
//! ```
//!
//! Every error has a stable code ([`Error::code`]): [`SiteCode`]'s, or the
//! core's for a config problem.

// Nothing from the site, the environment or a caller may panic the host process.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
pub mod init;
pub mod leak_scan;
mod mount;
mod site;

pub use error::{Error, SiteCode};
pub use init::{Action, FileChange, Framework, InitOptions, InitReport, Platform, Setting, init};
pub use leak_scan::{HandedOut, Leak, OutsideLink, ScanOptions, ScanReport, SecretKind, scan_for_leaks};
pub use mount::claims_mount;
pub use site::{Site, SiteOptions, StoreChoice, is_env_var_name};

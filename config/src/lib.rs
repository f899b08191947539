//! handoff's configuration: TOML text in, validated runtime [`Settings`] out, with every
//! problem reported at once.
//!
//! # Layout
//!
//! In the order a file goes through them:
//!
//! - `schema` (private): the keys each section accepts, read into raw
//!   structs that keep every value's position in the file.
//! - `validate` (private): raw configuration to [`Settings`], collecting every problem;
//!   also [`Settings::single`], the same checks for command-line values.
//! - `settings`: the validated runtime types the proxy runs on. A leaf: it imports
//!   nothing from the other modules but [`Problem`].
//!
//! And what `validate` uses:
//!
//! - [`defaults`]: every default and limit, as documented constants, and the `Default`
//!   impls built from them.
//! - `duration`: the `"1m30s"` duration syntax ([`parse_duration`], [`format_duration`]).
//! - `address` (private): listen and upstream address syntax.
//! - `error`: [`ConfigError`] and [`Problem`].
//!
//! `default.toml`, next to this crate's `Cargo.toml`, is the embedded default
//! ([`DEFAULT_CONFIG`]) and the reference for every key.
//!
//! # Usage
//!
//! ```
//! let settings = handoff_config::from_str(handoff_config::DEFAULT_CONFIG, "default.toml")?;
//! assert_eq!(settings.upstreams[0].name, "app");
//!
//! let error = handoff_config::from_str("[admin]\nlisten = 9180\n", "handoff.toml").unwrap_err();
//! assert_eq!(
//!     error.problems(),
//!     [
//!         "handoff.toml:2:10: admin.listen: expected a string, got integer 9180",
//!         "handoff.toml: upstream: at least one [[upstream]] is required",
//!     ]
//! );
//! # Ok::<(), handoff_config::ConfigError>(())
//! ```
#![forbid(unsafe_code)]

use std::path::Path;

mod address;
pub mod defaults;
mod duration;
mod error;
mod schema;
mod settings;
mod validate;

pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, Problem};
pub use settings::{
    AdminSettings, AnnotateSettings, Expose, ListenAddress, LogFormat, LogSettings, ServerSettings,
    Settings, UpstreamAddress, UpstreamSettings,
};

/// The embedded default configuration: one upstream `app` listening on 127.0.0.1:8080 for
/// an application at 127.0.0.1:3000, admin on 127.0.0.1:9180, every key present (or, when
/// it has no default, commented out) with its default explained.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// Parses and validates a configuration; `origin` (usually the file name) starts every
/// problem's message.
///
/// Fails with [`ConfigError::Invalid`] listing every problem found, in file order. On
/// success, [`Settings::warnings`] holds the non-fatal findings.
pub fn from_str(text: &str, origin: &str) -> Result<Settings, ConfigError> {
    validate::from_str(text, origin)
}

/// Reads and validates the configuration file at `path`; problems name the path as given.
///
/// Fails with [`ConfigError::Read`] when the file cannot be read, otherwise as
/// [`from_str`].
pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_str(&text, &path.display().to_string())
}

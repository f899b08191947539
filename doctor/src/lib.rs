//! handoff-doctor: the operator's 502 checklist as a command. It reads this host's nginx
//! configuration, php-fpm pools, handoff configuration and live state (listeners, socket
//! files, processes, memory, logs), and says for each check ok, warn, fail or skip, with
//! the file and line it is about, the handoff reason it would cause, and the next step.
//!
//! It changes nothing: no restarts, no writes, no chmod. It parses nginx's files itself
//! rather than running `nginx -T` (which creates pid and log files), and runs `nginx -t`
//! only when asked. A check it may not do without root is a skip that says why.
//!
//! # Layout
//!
//! - [`nginx`]: nginx's configuration syntax (a small lexer written here: the maintained
//!   Rust parsers either cover a typed subset or leave `include` to the caller), includes
//!   and globs, and the model the checks read (targets with their inherited settings);
//! - [`phpfpm`]: php-fpm pool files;
//! - [`host`]: where things are on this host ([`Host`]), injectable for fixture trees;
//! - `checks`: one function per check id ([`CHECKS`]);
//! - [`report`]: [`Finding`], [`Report`], the human and `--json` output.
//!
//! # Usage
//!
//! ```no_run
//! use handoff_doctor::{Doctor, Host, Options};
//!
//! let settings = handoff_config::from_str(handoff_config::DEFAULT_CONFIG, "default").ok();
//! let report = Doctor::new(Host::system(), Options::default()).run(settings.as_ref());
//! print!("{}", report.to_human());
//! std::process::exit(report.exit_code(false).into());
//! ```
#![forbid(unsafe_code)]

mod checks;
pub mod host;
pub mod nginx;
pub mod phpfpm;
pub mod report;

use handoff_config::Settings;

pub use checks::CHECKS;
pub use host::Host;
pub use report::{Finding, Report, Status, Summary, JSON_VERSION};

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--only ID,...`: check ids, or prefixes of them (`nginx` selects `nginx.*`);
    /// empty: every check.
    pub only: Vec<String>,
    /// `--exec-nginx-test`: also run `nginx -t` (it creates nginx's pid and log files).
    pub exec_nginx_test: bool,
}

/// One doctor run over one host.
#[derive(Debug)]
pub struct Doctor {
    host: Host,
    options: Options,
}

/// An `--only` entry that names no check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCheck(pub String);

// === impl Options ===

impl Options {
    /// Whether check `id` is selected.
    pub fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| selects(o, id))
    }

    /// Every `--only` entry that selects no check.
    pub fn unknown(&self) -> Vec<UnknownCheck> {
        self.only
            .iter()
            .filter(|o| !CHECKS.iter().any(|id| selects(o, id)))
            .map(|o| UnknownCheck(o.clone()))
            .collect()
    }
}

/// `--only` entry `only` names check `id`, or a prefix of it up to a dot.
fn selects(only: &str, id: &str) -> bool {
    id == only
        || id
            .strip_prefix(only)
            .is_some_and(|rest| rest.starts_with('.'))
}

// === impl Doctor ===

impl Doctor {
    /// A doctor for `host`.
    pub fn new(host: Host, options: Options) -> Doctor {
        Doctor { host, options }
    }

    /// Runs the selected checks; `settings` is handoff's configuration, when there is one.
    pub fn run(&self, settings: Option<&Settings>) -> Report {
        checks::run(&self.host, &self.options, settings)
    }
}

impl std::fmt::Display for UnknownCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--only {}: no such check (the checks: {})",
            self.0,
            CHECKS.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--only` takes ids and dot-prefixes of them; anything else is an unknown check.
    #[test]
    fn only_selects_ids_and_their_prefixes() {
        let only = |list: &[&str]| Options {
            only: list.iter().map(|s| (*s).to_owned()).collect(),
            ..Options::default()
        };
        let nginx = only(&["nginx"]);
        assert!(nginx.wants("nginx.config") && nginx.wants("nginx.intercept_errors"));
        assert!(!nginx.wants("handoff.coverage"));
        let fds = only(&["resources.fds", "logs"]);
        assert!(fds.wants("resources.fds") && fds.wants("logs") && !fds.wants("resources.oom"));
        assert!(Options::default().wants("firewall"));
        assert_eq!(
            only(&["res", "nginx"]).unknown(),
            [UnknownCheck("res".into())]
        );
    }
}

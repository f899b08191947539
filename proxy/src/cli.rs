//! The command line: `run` (default), `check`, `doctor`, `demo`, `faults`, `nginx-snippet`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use handoff_config::{ConfigError, Settings};

use crate::server::Handoff;

/// Exit status for a command line that cannot be used (sysexits `EX_USAGE`): an unknown
/// flag, a missing or invalid value (a fault mode, an address), clap's errors included.
pub const EXIT_USAGE: u8 = 64;
/// Exit status for an invalid configuration: the same `EX_USAGE`, since `--listen` and
/// `--upstream` are configuration given on the command line.
pub const EXIT_CONFIG: u8 = EXIT_USAGE;
/// Exit status for a configuration file that cannot be read (sysexits `EX_NOINPUT`).
pub const EXIT_NO_INPUT: u8 = 66;
/// Exit status when serving could not start (e.g. a port is taken).
pub const EXIT_START: u8 = 1;

/// handoff: a reverse-proxy sidecar between nginx and your app that says why a handoff failed.
#[derive(Debug, Parser)]
#[command(name = "handoff", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default): from -c FILE, $HANDOFF_CONFIG, --listen/--upstream, or the embedded default.
    Run(RunArgs),
    /// Validate the configuration like `nginx -t`: exit 0, or 64 with every problem.
    Check(ConfigArgs),
    /// Check this host the way the 502 checklist does (read-only): nginx, php-fpm, sockets,
    /// timers, SELinux, resources, logs. Exit 0 nothing failed, 1 a check failed.
    Doctor(DoctorArgs),
    /// Show every failure handoff names, against built-in misbehaving upstreams.
    Demo(crate::demo::DemoArgs),
    /// Run one misbehaving upstream, to rehearse your own nginx, dashboards and alerts.
    Faults(crate::demo::FaultsArgs),
    /// Print the nginx configuration that puts handoff behind a site, for your config.
    NginxSnippet(ConfigArgs),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(short, long, env = "HANDOFF_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// handoff's configuration; default $HANDOFF_CONFIG, else /etc/handoff/handoff.toml when
    /// it exists, else none (the handoff checks are skipped).
    #[arg(short, long, env = "HANDOFF_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// nginx's main configuration file; default: `--conf-path` from `nginx -V`.
    #[arg(long, value_name = "PATH")]
    nginx_conf: Option<PathBuf>,
    /// Print the report as JSON (a versioned schema, see docs/operations.md).
    #[arg(long)]
    json: bool,
    /// Run only these checks: ids or prefixes (`nginx` selects nginx.*), comma-separated.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    only: Vec<String>,
    /// Exit 1 on a warning too.
    #[arg(long)]
    strict: bool,
    /// Also run `nginx -t` (it creates nginx's pid and log files if missing).
    #[arg(long)]
    exec_nginx_test: bool,
    /// A directory of php-fpm pool files (repeatable); default /etc/php/*/fpm/pool.d and
    /// /etc/php-fpm.d.
    #[arg(long, value_name = "DIR")]
    php_fpm_pools: Vec<PathBuf>,
    /// Where php-fpm's sockets live; default /run/php.
    #[arg(long, value_name = "DIR")]
    php_fpm_run: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Listen address for a single upstream without a file (host:port or unix:/path).
    /// A configuration file (-c or $HANDOFF_CONFIG) takes precedence.
    #[arg(long, env = "HANDOFF_LISTEN", requires = "upstream")]
    listen: Option<String>,
    /// Upstream address for a single upstream without a file (host:port, unix:/path, tls://host:port).
    #[arg(long, env = "HANDOFF_UPSTREAM", requires = "listen")]
    upstream: Option<String>,
    /// The admin listener with --listen/--upstream (default 127.0.0.1:9180); e.g.
    /// 0.0.0.0:9180 for kubelet probes in a container configured by environment only.
    #[arg(long, env = "HANDOFF_ADMIN", requires = "listen")]
    admin: Option<String>,
}

/// Parses the command line and runs the chosen command.
///
/// A command line clap refuses exits [`EXIT_USAGE`], like every other usage error of
/// handoff, not clap's own 2; `--help` and `--version` print and exit 0.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and are not errors.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Check(args)) => check(args.config.as_deref()),
        Some(Command::Doctor(args)) => doctor(args),
        Some(Command::Demo(args)) => crate::demo::demo(args),
        Some(Command::Faults(args)) => crate::demo::faults(args),
        Some(Command::NginxSnippet(args)) => match load(args.config.as_deref()) {
            Ok(settings) => {
                print!("{}", crate::nginx_conf::snippet(&settings));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

fn run(args: RunArgs) -> ExitCode {
    // A file wins over --listen/--upstream: a container image may set HANDOFF_LISTEN and
    // HANDOFF_UPSTREAM while a deployment mounts a config and passes -c.
    let loaded = match (&args.config.config, &args.listen, &args.upstream) {
        (None, Some(listen), Some(upstream)) => {
            Settings::single(listen, upstream, args.admin.as_deref()).map_err(report)
        }
        _ => load(args.config.config.as_deref()),
    };
    let settings = match loaded {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    crate::logging::init(&settings.log);
    for warning in &settings.warnings {
        tracing::warn!(problem = %warning, "configuration warning");
    }
    let handoff = match Handoff::build(settings) {
        Ok(handoff) => handoff,
        Err(e) => {
            eprintln!("handoff: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    handoff.run_until_signalled(args.config.config);
    ExitCode::SUCCESS
}

fn check(config: Option<&Path>) -> ExitCode {
    match load(config) {
        Ok(settings) => {
            for warning in &settings.warnings {
                println!("warning: {warning}");
            }
            let origin = config.map_or("embedded default".into(), |p| p.display().to_string());
            println!(
                "handoff: configuration {origin} is ok ({} upstreams)",
                settings.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Where handoff's configuration is when neither -c nor $HANDOFF_CONFIG says.
const DOCTOR_DEFAULT_CONFIG: &str = "/etc/handoff/handoff.toml";

fn doctor(args: DoctorArgs) -> ExitCode {
    let default = Path::new(DOCTOR_DEFAULT_CONFIG);
    let config = args
        .config
        .or_else(|| default.is_file().then(|| default.to_owned()));
    let settings = match config.as_deref().map(handoff_config::from_file) {
        None => None,
        Some(Ok(settings)) => Some(settings),
        Some(Err(e)) => return report(e),
    };
    let mut host = handoff_doctor::Host::system();
    // Findings name absolute paths, whatever directory doctor was started in.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    if let Some(conf) = args.nginx_conf.map(absolute) {
        if let Err(e) = std::fs::metadata(&conf) {
            eprintln!("handoff doctor: --nginx-conf {}: {e}", conf.display());
            return ExitCode::from(EXIT_NO_INPUT);
        }
        host.nginx_conf = Some(conf);
    }
    if !args.php_fpm_pools.is_empty() {
        host.php_pools = args.php_fpm_pools.into_iter().map(absolute).collect();
    }
    if let Some(run) = args.php_fpm_run.map(absolute) {
        host.php_run = run;
    }
    let options = handoff_doctor::Options {
        only: args.only,
        exec_nginx_test: args.exec_nginx_test,
    };
    let unknown = options.unknown();
    if !unknown.is_empty() {
        for u in unknown {
            eprintln!("handoff doctor: {u}");
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    let report = handoff_doctor::Doctor::new(host, options).run(settings.as_ref());
    let text = if args.json {
        report.to_json()
    } else {
        let origin = config.map_or("none".to_owned(), |p| p.display().to_string());
        format!(
            "handoff doctor (handoff configuration: {origin})\n{}",
            report.to_human()
        )
    };
    // A closed pipe (`| head`) is not doctor's failure: the exit code still tells.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    ExitCode::from(report.exit_code(args.strict))
}

/// Loads from `config`, or the embedded default; reports problems on stderr.
fn load(config: Option<&Path>) -> Result<Settings, ExitCode> {
    match config {
        Some(path) => handoff_config::from_file(path),
        None => handoff_config::from_str(handoff_config::DEFAULT_CONFIG, "embedded default"),
    }
    .map_err(report)
}

fn report(e: ConfigError) -> ExitCode {
    let code = match e {
        ConfigError::Read { .. } => EXIT_NO_INPUT,
        _ => EXIT_CONFIG,
    };
    for line in e.problems() {
        eprintln!("{line}");
    }
    ExitCode::from(code)
}

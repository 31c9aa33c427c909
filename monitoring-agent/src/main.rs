//! The `monitoring-agent` command: `run` (the default) and `check-config`.
//!
//! A thin layer over the library: parse the command line, set up logging, load the
//! configuration, turn signals into a cancellation token (SIGTERM, ctrl-c) or a reload
//! (SIGHUP, see `monitoring_agent::reload`), and map errors to exit codes in one place
//! (0 success, 1 failure or invalid configuration).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use monitoring_agent::config;
use monitoring_agent::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Collects logs and metrics on this host and ships them to a monitoring-collector.
#[derive(Debug, Parser)]
#[command(name = "monitoring-agent", version, about)]
struct Cli {
    /// Log format on stderr. `RUST_LOG` sets the level (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Configuration file (TOML).
    #[arg(
        long,
        global = true,
        env = "MONITORING_AGENT_CONFIG",
        default_value = "config/agent.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or ctrl-c (the default); SIGHUP reloads the
    /// configuration.
    Run,
    /// Validate the configuration: print OK, or every problem as `file:line: key: message`.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => {
            init_logging(cli.log_format);
            match run(&cli.config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(message = "Agent failed.", error = format!("{error:#}"));
                    eprintln!("monitoring-agent: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(_) => {
            println!("OK: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A closed stderr must not panic the task that logs (tracing-subscriber would
    // eprintln! its write error): losing a log line is better than losing a task.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: escape codes make log files unreadable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = config::load(path)?;
    // Two workers are plenty for an agent; file reading and sampling run on the
    // blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handlers(shutdown.clone())?;
        let telemetry = Arc::new(Telemetry::new());
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
        monitoring_agent::reload::watch_sighup(
            path.to_path_buf(),
            telemetry.clone(),
            reload_tx,
            shutdown.clone(),
        )
        .context("cannot install the SIGHUP handler")?;
        monitoring_agent::agent::run_reloadable(config, telemetry, shutdown, reloads).await?;
        Ok(())
    })
}

/// SIGTERM and ctrl-c start a graceful shutdown; a second one exits at once (nothing
/// acknowledged is lost: unacknowledged lines are read again next time).
fn spawn_signal_handlers(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            signals += 1;
            if signals == 1 {
                info!(
                    message = "Signal received; shutting down gracefully (send it again to exit at once)."
                );
                shutdown.cancel();
            } else {
                warn!(message = "Second signal received; exiting without waiting.");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

//! The `monitoring-collector` command: `run` (the default) and `check-config`.
//!
//! Exit codes, decided in one place ([`main`]): 0 success, 1 a configuration or
//! runtime error (printed with its causes), 2 a usage error (from clap).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use monitoring_collector::config::Config;
use monitoring_common::config::ConfigError;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Accepts monitoring agents over WebSocket, stores their logs and metrics and
/// serves them through a REST API.
#[derive(Debug, Parser)]
#[command(name = "monitoring-collector", version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "MONITORING_COLLECTOR_CONFIG",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// Log format on stderr; the level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Validate the configuration: print "OK", or every problem as
    /// `file:line: key `x`: message` and exit 1.
    CheckConfig,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(config_path) = cli.config.clone() else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--config <PATH> is required",
            )
            .exit();
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&config_path),
        Command::Run => {
            init_logging(cli.log_format);
            run(&config_path)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Configuration problems are already in file:line form; other errors are
            // shown with their chain of causes.
            let message = match error.downcast_ref::<ConfigError>() {
                Some(config_error) => config_error.to_string(),
                None => {
                    let message = render(&error);
                    tracing::error!(message = "Collector failed.", error = %message);
                    format!("error: {message}")
                }
            };
            // Not eprintln!: it panics when stderr is closed.
            drop(writeln!(std::io::stderr(), "{message}"));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: some errors repeat their source in their
/// own message, and `{:#}` would then print it twice.
fn render(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    Config::load(path)?;
    writeln!(std::io::stdout(), "OK").context("cannot write to stdout")?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Without `log_internal_errors(false)`, a log line written to a closed stderr (a
    // pipe whose reader died) makes tracing-subscriber `eprintln!`, which panics the
    // task that logged: the signal handler, a connection... Lost lines are better.
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
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("collector")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signals(shutdown.clone()));
        tracing::info!(message = "Starting.", config = %path.display(), version = env!("CARGO_PKG_VERSION"));
        monitoring_collector::run(config, shutdown).await
    })?;
    Ok(())
}

/// Cancels `shutdown` on the first SIGTERM or ctrl-c; a second one exits at once.
async fn wait_for_signals(shutdown: CancellationToken) {
    let mut signals = 0;
    loop {
        let received = signal().await;
        signals += 1;
        if signals == 1 {
            shutdown.cancel();
            tracing::info!(
                message = "Signal received; shutting down (send it again to exit at once).",
                signal = received
            );
        } else {
            tracing::warn!(
                message = "Second signal received; exiting without finishing in-flight batches.",
                signal = received
            );
            std::process::exit(1);
        }
    }
}

#[cfg(unix)]
async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(error) => {
            tracing::warn!(message = "Cannot listen for SIGTERM; only ctrl-c stops the collector.", %error);
            drop(tokio::signal::ctrl_c().await);
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn signal() -> &'static str {
    drop(tokio::signal::ctrl_c().await);
    "ctrl-c"
}

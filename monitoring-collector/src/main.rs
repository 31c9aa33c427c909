//! The `monitoring-collector` command: `run` (the default), `check-config`, `token`,
//! `certs`, and `user` / `api-token` to manage the REST API's users and tokens (their
//! logic is in `monitoring_collector::api::auth::admin`).
//!
//! Exit codes, decided in one place ([`main`]): 0 success, 1 a configuration or
//! runtime error (printed with its causes), 2 a usage error (from clap).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use monitoring_collector::api::auth::{Role, admin};
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
    /// Mint an agent token (JWT) with the `[auth]` key of the configuration (mode
    /// "jwt") and print only the token on stdout.
    Token(TokenArgs),
    /// Write a development CA, a server certificate and agent client certificates
    /// (PEM) for TLS and mutual TLS. Not for production.
    Certs(CertsArgs),
    /// Manage the REST API's users (in `[api.auth] users_file`; a running collector
    /// sees changes within seconds).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the REST API's tokens (in `[api.auth] users_file`; a running
    /// collector sees changes within seconds).
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user who logs in with a password. Without --password-stdin a random
    /// password is generated and printed once, alone, on stdout.
    Add(UserAddArgs),
    /// Remove a user; their sessions end at the collector's next reload.
    Remove(NameArgs),
    /// List the users.
    List,
}

#[derive(Debug, Subcommand)]
enum ApiTokenCommand {
    /// Create an API token and print it once, alone, on stdout (only its SHA-256
    /// digest is stored).
    Create(TokenCreateArgs),
    /// Revoke an API token by name.
    Revoke(NameArgs),
    /// List the API tokens.
    List,
}

/// Arguments of `user add`.
#[derive(Debug, clap::Args)]
struct UserAddArgs {
    /// User name: 1 to 64 of letters, digits, '.', '_', '@', '-'.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// What the user may do: read (the data endpoints) or admin (everything).
    #[arg(long, value_name = "read|admin")]
    role: Role,
    /// Read the password (at least 12 characters) from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Replace an existing user of that name (new password and role).
    #[arg(long)]
    replace: bool,
}

/// Arguments of `api-token create`.
#[derive(Debug, clap::Args)]
struct TokenCreateArgs {
    /// Token name, what `api-token revoke` takes: 1 to 64 of letters, digits, '.',
    /// '_', '@', '-'.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// What the token may do: read (the data endpoints) or admin (everything).
    #[arg(long, value_name = "read|admin")]
    role: Role,
    /// How long the token is valid: 90d, 12h, 30m... Default: until revoked.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<std::time::Duration>,
}

/// A user or token name.
#[derive(Debug, clap::Args)]
struct NameArgs {
    /// The name.
    #[arg(long, value_name = "NAME")]
    name: String,
}

/// Arguments of `certs`.
#[derive(Debug, clap::Args)]
struct CertsArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// An agent to make a client certificate for (repeatable).
    #[arg(long = "agent-id", value_name = "ID")]
    agent_ids: Vec<String>,
    /// A name of the server certificate (repeatable; IP addresses become IP SANs).
    #[arg(long = "server-name", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    server_names: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Arguments of `token`.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The agent the token is for (its `sub` claim).
    #[arg(long, value_name = "ID")]
    agent_id: String,
    /// How long the token is valid: 30d, 12h, 90m...
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
    /// Token id (`jti`), the value to put on the deny-list to revoke it. Default:
    /// random.
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
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
    // `certs` needs no configuration.
    if let Some(Command::Certs(args)) = &cli.command {
        return finish(certs(args));
    }
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
        Command::Token(args) => token(&config_path, &args),
        Command::Certs(args) => certs(&args),
        Command::User(command) => user(&config_path, command),
        Command::ApiToken(command) => api_token(&config_path, command),
        Command::Run => {
            init_logging(cli.log_format);
            run(&config_path)
        }
    };
    finish(result)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
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
    let config = Config::load(path)?;
    // Also reads the JWT key files, which validation (pure) cannot.
    monitoring_collector::auth::Authenticator::new(&config.auth)?;
    writeln!(std::io::stdout(), "OK").context("cannot write to stdout")?;
    Ok(())
}

fn token(path: &Path, args: &TokenArgs) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let agent = monitoring_collector::auth::AgentId::parse(&args.agent_id)
        .with_context(|| format!("--agent-id {:?}", args.agent_id))?;
    if args.ttl.is_zero() {
        anyhow::bail!("--ttl must be longer than zero");
    }
    let token =
        monitoring_collector::auth::mint(&config.auth, &agent, args.ttl, args.jti.as_deref())?;
    writeln!(std::io::stdout(), "{token}").context("cannot write to stdout")?;
    Ok(())
}

/// Unix seconds now.
fn unix_now() -> i64 {
    monitoring_common::event::now_ns().div_euclid(1_000_000_000)
}

/// Writes `text` to stdout.
fn print(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// A message for the operator on stderr (stdout is for what scripts capture).
fn note(text: &str) {
    // Not eprintln!: it panics when stderr is closed.
    drop(writeln!(std::io::stderr(), "{text}"));
}

fn user(config_path: &Path, command: UserCommand) -> anyhow::Result<()> {
    let path = Config::load(config_path)?.api.auth.users_file;
    let file = path.display();
    match command {
        UserCommand::Add(args) => {
            let generated = !args.password_stdin;
            let password = match generated {
                true => monitoring_collector::api::auth::password::generate_password(),
                false => admin::read_password_line(std::io::stdin().lock())?,
            };
            admin::add_user(
                &path,
                &args.name,
                args.role,
                &password,
                args.replace,
                unix_now(),
            )?;
            note(&format!(
                "Added user {:?} with role {} to {file}.",
                args.name, args.role
            ));
            if generated {
                note("Its password, shown only this once, is on stdout.");
                print(&format!("{password}\n"))?;
            }
        }
        UserCommand::Remove(args) => {
            admin::remove_user(&path, &args.name)?;
            note(&format!("Removed user {:?} from {file}.", args.name));
        }
        UserCommand::List => print(&admin::format_users(&admin::load(&path)?))?,
    }
    Ok(())
}

fn api_token(config_path: &Path, command: ApiTokenCommand) -> anyhow::Result<()> {
    let path = Config::load(config_path)?.api.auth.users_file;
    let file = path.display();
    match command {
        ApiTokenCommand::Create(args) => {
            let token = admin::create_token(&path, &args.name, args.role, args.ttl, unix_now())?;
            note(&format!(
                "Created API token {:?} with role {} in {file}; it is shown only this once.",
                args.name, args.role
            ));
            print(&format!("{token}\n"))?;
        }
        ApiTokenCommand::Revoke(args) => {
            admin::revoke_token(&path, &args.name)?;
            note(&format!("Revoked API token {:?} in {file}.", args.name));
        }
        ApiTokenCommand::List => print(&admin::format_tokens(&admin::load(&path)?, unix_now()))?,
    }
    Ok(())
}

fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    for id in &args.agent_ids {
        monitoring_collector::auth::AgentId::parse(id)
            .with_context(|| format!("--agent-id {id:?}"))?;
    }
    if args.days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let files = monitoring_collector::certs::write(&monitoring_collector::certs::CertsRequest {
        out: args.out.clone(),
        agent_ids: args.agent_ids.clone(),
        server_names: args.server_names.clone(),
        days: args.days,
        force: args.force,
    })?;
    let mut stdout = std::io::stdout();
    for file in files {
        writeln!(stdout, "{}", file.display()).context("cannot write to stdout")?;
    }
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
    // Before the listeners and the store open anything: agents need one each.
    monitoring_collector::nofile::raise_and_log(config.server.max_connections);
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

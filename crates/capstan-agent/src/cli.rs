//! The command line: `capstan-agent register` and `capstan-agent run`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use capstan_api::agents::MAX_POLL_WAIT_MS;
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{Agent, RunSettings},
    home::{DEFAULT_HOME, Home, Registration},
    logging::{self, LogFormat},
    register::{RegisterOptions, register},
};

/// The Capstan agent: registers a machine with a Capstan cluster and runs the
/// commands the cluster sends it.
#[derive(Debug, Parser)]
#[command(name = "capstan-agent", version, about, propagate_version = true)]
pub struct Cli {
    /// Where the agent keeps its registration, journal, packages and work.
    #[arg(long, env = "CAPSTAN_AGENT_HOME", default_value = DEFAULT_HOME, global = true)]
    home: PathBuf,
    /// How log lines on stderr are written.
    #[arg(long, env = "CAPSTAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register this machine with a server, storing its credential in the home.
    Register(RegisterArgs),
    /// Poll the server for commands and run them, until SIGTERM or SIGINT.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RegisterArgs {
    /// The server's URL, e.g. https://capstan.example.com.
    #[arg(long, env = "CAPSTAN_SERVER")]
    server: String,
    /// A registration token (capreg_…). Prefer the environment variable: a command
    /// line is visible to every user of the machine.
    #[arg(long, env = "CAPSTAN_REGISTRATION_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    token: SecretString,
    /// The agent's name, unique in the cluster.
    #[arg(long, env = "CAPSTAN_AGENT_NAME")]
    name: String,
    /// The environment the agent belongs to, e.g. Production.
    #[arg(long, env = "CAPSTAN_ENVIRONMENT")]
    environment: String,
    /// Tags, separated by commas: web,api.
    #[arg(long, env = "CAPSTAN_AGENT_TAGS", value_delimiter = ',')]
    tags: Vec<String>,
    /// A PEM file of CA certificates to trust besides the system's.
    #[arg(long, env = "CAPSTAN_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Replace an existing registration in the home.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// How long running commands may go on after SIGTERM before they are cancelled.
    #[arg(long, env = "CAPSTAN_SHUTDOWN_GRACE", default_value = "60s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// How long one poll waits for work (at most 60s).
    #[arg(long, env = "CAPSTAN_POLL_WAIT", default_value = "30s", value_parser = parse_poll_wait)]
    poll_wait: Duration,
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the token is empty".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    capstan_core::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_poll_wait(s: &str) -> Result<Duration, String> {
    let wait = parse_duration(s)?;
    if wait.is_zero() || wait > Duration::from_millis(MAX_POLL_WAIT_MS) {
        return Err(format!(
            "a poll waits more than 0s and at most {}s",
            MAX_POLL_WAIT_MS / 1000
        ));
    }
    Ok(wait)
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format) {
        return fail(&format!("{e:#}"));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let home = Home::new(cli.home);
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Register(args) => {
                let line = register(RegisterOptions {
                    server: args.server,
                    token: args.token,
                    name: args.name,
                    environment: args.environment,
                    tags: args.tags,
                    home,
                    ca_cert: args.ca_cert,
                    force: args.force,
                })
                .await?;
                print_line(&line)
            }
            Command::Run(args) => run(home, args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

async fn run(home: Home, args: RunArgs) -> anyhow::Result<()> {
    let registration = Registration::load(&home)?;
    let agent = Agent::open(home, registration).await?;
    let shutdown = shutdown_on_signal()?;
    let settings = RunSettings {
        poll_wait: args.poll_wait,
        shutdown_grace: args.shutdown_grace,
    };
    agent.run(settings, shutdown).await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Prints a line on stdout. A reader that already went away (`| head -0`) is not a
/// failure: the registration is saved, and `println!` would panic.
fn print_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// A token cancelled on the first SIGTERM or SIGINT; a second one exits at once.
fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("cannot handle SIGINT: {e}"))?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received: stopping (send it again to exit at once)");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("capstan-agent: second signal received, exiting now");
        std::process::exit(130);
    });
    Ok(token)
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("capstan-agent: {reason}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn register_takes_tags_separated_by_commas() {
        let cli = Cli::try_parse_from([
            "capstan-agent",
            "register",
            "--server",
            "https://capstan.example.com",
            "--token",
            "capreg_x",
            "--name",
            "web01",
            "--environment",
            "Production",
            "--tags",
            "web,api",
            "--home",
            "/tmp/agent",
        ])
        .unwrap();
        assert_eq!(cli.home, PathBuf::from("/tmp/agent"));
        let Command::Register(args) = cli.command else {
            panic!("not register");
        };
        assert_eq!(args.tags, ["web", "api"]);
        assert!(!args.force);
    }

    #[test]
    fn poll_wait_is_bounded_by_the_protocol() {
        assert_eq!(parse_poll_wait("30s").unwrap(), Duration::from_secs(30));
        assert!(parse_poll_wait("61s").is_err());
        assert!(parse_poll_wait("0s").is_err());
        assert!(parse_duration("60").is_err());
    }
}

//! `capstan`: run a server node, a local development cluster, or operate a cluster
//! through its API. Operator commands never touch the database directly.

mod agents;
mod approvals;
mod audit;
mod dashboard;
mod deployments;
mod dev;
mod freezes;
mod lifecycles;
mod login;
mod master_key;
mod nodes;
mod output;
mod packages;
mod projects;
mod roles;
mod signals;
mod tasks;
mod teams;
mod users;

use std::process::ExitCode;

use capstan_server::{LogFormat, Node, ServerArgs};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Capstan: a highly available deployment control plane.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server node.
    Server(Box<ServerArgs>),
    /// Run a 3-node cluster on this machine with a private PostgreSQL.
    Dev(dev::DevArgs),
    /// List, drain and tune the cluster's nodes.
    Nodes(nodes::NodesArgs),
    /// List, show, queue and cancel tasks, and read their logs.
    Tasks(tasks::TasksArgs),
    /// Push, list and delete packages of the built-in feed.
    Packages(packages::PackagesArgs),
    /// List agents, create registration tokens, disable, delete and health-check them.
    Agents(agents::AgentsArgs),
    /// List and create environments.
    Environments(agents::EnvironmentsArgs),
    /// Run a script on agents picked by names, tags and environment.
    RunScript(agents::RunScriptArgs),
    /// Generate a master key, show its versions, rotate sensitive values to a new one.
    MasterKey(master_key::MasterKeyArgs),
    /// List, create and delete projects; read and save their process and variables.
    Projects(projects::ProjectsArgs),
    /// Create, list and show releases.
    Releases(projects::ReleasesArgs),
    /// Create, list, disable, enable and delete users and service accounts.
    Users(users::UsersArgs),
    /// Create, list and revoke users' and service accounts' API keys.
    ApiKeys(users::ApiKeysArgs),
    /// Create teams, add members, and grant them roles in projects and environments.
    Teams(teams::TeamsArgs),
    /// List the built-in roles; create, change and delete custom ones.
    Roles(roles::RolesArgs),
    /// List, show, create and delete lifecycles (the order releases are promoted in).
    Lifecycles(lifecycles::LifecyclesArgs),
    /// Deployments waiting for approval: list, approve, deny; and the approval rules.
    Approvals(approvals::ApprovalsArgs),
    /// List, show, create, update and delete freeze windows (when deployments wait).
    Freezes(freezes::FreezesArgs),
    /// Deploy a project's release to an environment, optionally following it to the end.
    Deploy(Box<deployments::DeployArgs>),
    /// List and show deployments, cancel or abandon them, answer their questions.
    Deployments(deployments::DeploymentsArgs),
    /// Sign in as a person with a password: keeps an API key that later commands use
    /// when CAPSTAN_API_KEY is unset.
    Login(login::LoginArgs),
    /// Revoke and forget the key `capstan login` kept.
    Logout(login::LogoutArgs),
    /// Show the audit log: who changed what, when, from where, before and after.
    Audit(audit::AuditArgs),
    /// Show which release is where: projects × environments, sized to the terminal.
    Dashboard(dashboard::DashboardArgs),
}

/// Parses the command line. A command that talks to the API and was given no key
/// (no `--api-key`, no CAPSTAN_API_KEY) uses the one `capstan login` kept.
fn parse_cli() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(args.clone());
    let without_key = matches
        .subcommand()
        .is_some_and(|(_, sub)| matches!(sub.try_get_one::<String>("api_key"), Ok(None)));
    if without_key && let Some(key) = login::stored_key() {
        // After the subcommand's name, where its global `--api-key` is accepted and
        // before any `--` that ends the options.
        let mut args = args;
        let at = 2.min(args.len());
        args.splice(at..at, ["--api-key".into(), key.into()]);
        return Cli::parse_from(args);
    }
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

fn main() -> ExitCode {
    let cli = parse_cli();
    match cli.command {
        Command::Server(args) => run_server(*args),
        Command::Dev(args) => with_runtime(LogFormat::Text, move || dev::run(args)),
        Command::Nodes(args) => run_client(nodes::run(args)),
        Command::Tasks(args) => run_client(tasks::run(args)),
        Command::Packages(args) => run_client(packages::run(args)),
        Command::Agents(args) => run_client(agents::run(args)),
        Command::Environments(args) => run_client(agents::environments(args)),
        Command::RunScript(args) => run_client(agents::run_script(args)),
        Command::MasterKey(args) => run_client(master_key::run(args)),
        Command::Projects(args) => run_client(projects::projects(args)),
        Command::Releases(args) => run_client(projects::releases(args)),
        Command::Users(args) => run_client(users::users(args)),
        Command::ApiKeys(args) => run_client(users::api_keys(args)),
        Command::Teams(args) => run_client(teams::run(args)),
        Command::Roles(args) => run_client(roles::run(args)),
        Command::Lifecycles(args) => run_client(lifecycles::run(args)),
        Command::Approvals(args) => run_client(approvals::run(args)),
        Command::Freezes(args) => run_client(freezes::run(args)),
        Command::Deploy(args) => run_client(deployments::deploy(*args)),
        Command::Deployments(args) => run_client(deployments::run(args)),
        Command::Login(args) => run_client(login::login(args)),
        Command::Logout(args) => run_client(login::logout(args)),
        Command::Audit(args) => run_client(audit::run(args)),
        Command::Dashboard(args) => run_client(dashboard::run(args)),
    }
}

/// Runs a CLI command that talks to the API.
fn run_client(command: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        // What was printed was read as far as the reader wanted; nothing failed.
        Err(e) if output::reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn run_server(args: ServerArgs) -> ExitCode {
    let log_format = args.log_format;
    let settings = match args.into_settings() {
        Ok(settings) => settings,
        Err(reason) => return fail(&reason),
    };
    with_runtime(log_format, move || async move {
        let node = Node::build(settings)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let shutdown = signals::shutdown_on_signal();
        node.run(shutdown).await
    })
}

/// Sets up logging and tracing (before the runtime, see `telemetry::init`), runs `main`
/// on a multi-threaded runtime, and flushes traces at the end.
fn with_runtime<F, Fut>(log_format: LogFormat, main: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let telemetry = match capstan_server::telemetry::init(log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(&format!("{e:#}")),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(main());
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("capstan: {reason}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn an_intervention_takes_exactly_one_answer() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            let mut argv = vec!["capstan", "deployments", "intervene", "12", "5"];
            argv.extend_from_slice(args);
            super::Cli::try_parse_from(argv)
        };
        assert!(parse(&["--retry", "--note", "disk freed"]).is_ok());
        assert!(parse(&["--proceed"]).is_ok());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--retry", "--abort"]).is_err());
    }

    #[test]
    fn deploy_takes_repeated_targets_and_an_offline_policy() {
        use clap::Parser as _;
        let argv = [
            "capstan",
            "deploy",
            "--project",
            "Web shop",
            "--release",
            "2.4.0",
            "--environment",
            "Production",
            "--target",
            "web-01",
            "--target",
            "web-02",
            "--offline-targets",
            "skip",
            "--follow",
        ];
        assert!(super::Cli::try_parse_from(argv).is_ok());
        let mut bad = argv;
        bad[13] = "sometimes";
        assert!(super::Cli::try_parse_from(bad).is_err());
    }
}

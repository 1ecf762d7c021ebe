//! `capstan agents …`, `capstan environments …` and `capstan run-script`.

use anyhow::Context as _;
use capstan_api::{
    AgentQuery, AgentResponse, ApiClient, CommandList, CommandVariable,
    CreateRegistrationTokenRequest, CreateTaskRequest, EnvironmentRequest, RunScriptRequest,
    ScriptSyntax, UpdateAgentRequest, timestamp,
};
use capstan_core::TaskState;
use clap::{Args, Subcommand, ValueEnum};

use crate::output::outln;
use crate::{nodes::ClientArgs, tasks};

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Show registered agents.
    List {
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// unknown, healthy or unhealthy.
        #[arg(long)]
        health: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a registration token for `capstan-agent register`.
    Token {
        /// How many agents may register with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid.
        #[arg(long, default_value = "24h")]
        expires_in: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Refuse an agent on every node at once (it keeps its registration).
    Disable { agent: String },
    /// Let a disabled agent in again.
    Enable { agent: String },
    /// Delete an agent; its credential is refused at once.
    Delete { agent: String },
    /// Health-check agents now (all enabled ones without names) and show the result.
    Check { agents: Vec<String> },
}

#[derive(Debug, Args)]
pub struct EnvironmentsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: EnvironmentsCommand,
}

#[derive(Debug, Subcommand)]
enum EnvironmentsCommand {
    /// Show environments.
    List,
    /// Add an environment.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Syntax {
    Bash,
    Sh,
    Powershell,
}

/// Run a script on agents, e.g.
/// `capstan run-script --tags web --environment Production --follow -- 'uptime'`.
#[derive(Debug, Args)]
pub struct RunScriptArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Agents by name (comma-separated).
    #[arg(long, value_delimiter = ',')]
    agents: Vec<String>,
    /// Agents having all these tags (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    #[arg(long)]
    environment: Option<String>,
    /// Agents running it at once.
    #[arg(long, default_value_t = 10)]
    max_parallel: u32,
    /// How long each agent may run it.
    #[arg(long, default_value = "10m")]
    timeout: String,
    #[arg(long, value_enum, default_value = "bash")]
    syntax: Syntax,
    /// A variable, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// A variable whose value is masked in the log, NAME=VALUE (repeatable).
    #[arg(long = "sensitive-var", value_name = "NAME=VALUE")]
    sensitive: Vec<String>,
    /// Print the log as it is written, then each agent's outcome; exit 1 unless the
    /// script succeeded everywhere.
    #[arg(long, short)]
    follow: bool,
    /// The script.
    #[arg(last = true, required = true)]
    script: Vec<String>,
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        AgentsCommand::List {
            environment,
            tag,
            health,
            json,
        } => {
            let mut query = AgentQuery {
                environment,
                tag,
                health,
                limit: Some(500),
                ..Default::default()
            };
            let mut agents = Vec::new();
            loop {
                let page = client.list_agents(&query).await?;
                agents.extend(page.items);
                match page.next {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&agents)?)?;
            } else {
                print_agents(&agents)?;
            }
        }
        AgentsCommand::Token {
            uses,
            expires_in,
            note,
        } => {
            let token = client
                .create_registration_token(&CreateRegistrationTokenRequest {
                    expires_in: Some(expires_in),
                    uses: Some(uses),
                    note,
                })
                .await?;
            outln!("{}", token.token.unwrap_or_default())?;
            eprintln!(
                "valid for {} registration(s) until {}; it is shown only now",
                token.uses_left,
                timestamp::format(token.expires_at)
            );
        }
        AgentsCommand::Disable { agent } => set_disabled(&client, &agent, true).await?,
        AgentsCommand::Enable { agent } => set_disabled(&client, &agent, false).await?,
        AgentsCommand::Delete { agent } => {
            let found = client.find_agent(&agent).await?;
            client.delete_agent(found.id).await?;
            outln!("deleted agent {}", found.name)?;
        }
        AgentsCommand::Check { agents } => {
            let task = client
                .create_task(&CreateTaskRequest::new(
                    "health-check",
                    serde_json::json!({ "agents": agents }),
                ))
                .await?;
            let done = tasks::wait_for(&client, task.id).await?;
            print_commands(&client.task_commands(task.id).await?)?;
            if done.state != TaskState::Succeeded {
                anyhow::bail!(
                    "health check {} {}: {}",
                    task.id,
                    done.state,
                    done.error.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

async fn set_disabled(client: &ApiClient, agent: &str, disabled: bool) -> anyhow::Result<()> {
    let found = client.find_agent(agent).await?;
    let changed = client
        .update_agent(
            found.id,
            &UpdateAgentRequest {
                disabled: Some(disabled),
                ..Default::default()
            },
        )
        .await?;
    outln!(
        "agent {} is {}",
        changed.name,
        if changed.disabled {
            "disabled"
        } else {
            "enabled"
        }
    )?;
    Ok(())
}

pub async fn environments(args: EnvironmentsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        EnvironmentsCommand::List => {
            for env in client.list_environments().await?.items {
                outln!("{:<6} {:<30} {}", env.id, env.name, env.description)?;
            }
        }
        EnvironmentsCommand::Create { name, description } => {
            let env = client
                .create_environment(&EnvironmentRequest { name, description })
                .await?;
            outln!("created environment {} (id {})", env.name, env.id)?;
        }
    }
    Ok(())
}

fn parse_variable(text: &str, sensitive: bool) -> anyhow::Result<CommandVariable> {
    let (name, value) = text
        .split_once('=')
        .with_context(|| format!("`{text}` is not NAME=VALUE"))?;
    Ok(CommandVariable {
        name: name.to_owned(),
        value: value.to_owned(),
        sensitive,
    })
}

pub async fn run_script(args: RunScriptArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    let mut variables = Vec::new();
    for text in &args.variables {
        variables.push(parse_variable(text, false)?);
    }
    for text in &args.sensitive {
        variables.push(parse_variable(text, true)?);
    }
    let request = RunScriptRequest {
        script: args.script.join(" "),
        syntax: match args.syntax {
            Syntax::Bash => ScriptSyntax::Bash,
            Syntax::Sh => ScriptSyntax::Sh,
            Syntax::Powershell => ScriptSyntax::PowerShell,
        },
        agents: args.agents,
        tags: args.tags,
        environment: args.environment,
        max_parallel: Some(args.max_parallel),
        timeout: Some(args.timeout),
        variables,
        ..Default::default()
    };
    let task = client.run_script(&request).await?;
    if !args.follow {
        outln!("{}", task.id)?;
        return Ok(());
    }
    eprintln!("task {}", task.id);
    let followed = tasks::follow_log(&client, task.id).await;
    print_commands(&client.task_commands(task.id).await?)?;
    followed
}

fn print_agents(agents: &[AgentResponse]) -> anyhow::Result<()> {
    outln!(
        "{:<6} {:<24} {:<16} {:<10} {:<9} {:<28} {:<12} TAGS",
        "ID",
        "NAME",
        "ENVIRONMENT",
        "HEALTH",
        "STATUS",
        "LAST SEEN",
        "NODE"
    )?;
    for agent in agents {
        outln!(
            "{:<6} {:<24} {:<16} {:<10} {:<9} {:<28} {:<12} {}",
            agent.id,
            agent.name,
            agent.environment,
            agent.health.as_str(),
            if agent.disabled {
                "disabled"
            } else {
                "enabled"
            },
            agent
                .last_seen
                .map(timestamp::format)
                .unwrap_or_else(|| "never".into()),
            agent.last_node.as_deref().unwrap_or("-"),
            agent.tags.join(",")
        )?;
    }
    Ok(())
}

fn print_commands(commands: &CommandList) -> anyhow::Result<()> {
    outln!("{:<24} {:<10} {:<5} DETAIL", "AGENT", "STATE", "EXIT")?;
    for command in &commands.items {
        let mut detail = command.error.clone().unwrap_or_default();
        for (name, value) in &command.outputs {
            detail.push_str(&format!(" {name}={value}"));
        }
        outln!(
            "{:<24} {:<10} {:<5} {}",
            command.agent_name,
            command.state,
            command
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            detail.trim()
        )?;
    }
    Ok(())
}

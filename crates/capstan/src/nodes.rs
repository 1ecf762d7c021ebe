//! `capstan nodes ...`: list, drain, undrain, set the task cap of, and delete nodes.

use std::time::{Duration, Instant};

use crate::output::outln;
use anyhow::Context as _;
use capstan_api::{ApiClient, NodeResponse, UpdateNodeRequest};
use capstan_core::{TaskCap, parse_duration};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Where the API is and how to authenticate.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// A node's or the load balancer's URL.
    #[arg(
        long,
        env = "CAPSTAN_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// API key sent as a bearer token.
    #[arg(long, env = "CAPSTAN_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: NodesCommand,
}

#[derive(Debug, Subcommand)]
enum NodesCommand {
    /// Show every node.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop a node taking new tasks and take it out of the load balancer (ping 418).
    Drain {
        name: String,
        /// Return only when the node has no running task, showing progress meanwhile.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (`30s`, `10m`).
        #[arg(long, default_value = "1h", value_parser = duration_arg)]
        timeout: Duration,
    },
    /// Let a drained node take tasks and traffic again.
    Undrain { name: String },
    /// Set how many tasks a node runs at once (0-1000; 0 = API/UI only).
    SetTaskCap {
        name: String,
        #[arg(value_parser = task_cap_arg)]
        task_cap: TaskCap,
    },
    /// Forget a node. A node that is still running adds itself back.
    Delete { name: String },
}

pub async fn run(args: NodesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        NodesCommand::List { json } => {
            let nodes = client.list_nodes().await?;
            if json {
                outln!("{}", serde_json_pretty(&nodes))?;
            } else {
                print_table(&nodes)?;
            }
        }
        NodesCommand::Drain {
            name,
            wait,
            timeout,
        } => {
            let node = client.find_node(&name).await?;
            let update = UpdateNodeRequest {
                draining: Some(true),
                ..Default::default()
            };
            let node = client.update_node(node.id, &update).await?;
            outln!("node `{}` is draining", node.name)?;
            if wait {
                wait_until_idle(&client, node, timeout).await?;
            }
        }
        NodesCommand::Undrain { name } => {
            let node = client.find_node(&name).await?;
            let update = UpdateNodeRequest {
                draining: Some(false),
                ..Default::default()
            };
            let node = client.update_node(node.id, &update).await?;
            outln!("node `{}` is no longer draining", node.name)?;
        }
        NodesCommand::SetTaskCap { name, task_cap } => {
            let node = client.find_node(&name).await?;
            let update = UpdateNodeRequest {
                task_cap: Some(task_cap),
                ..Default::default()
            };
            let node = client.update_node(node.id, &update).await?;
            outln!(
                "node `{}` now runs at most {} task(s) at once",
                node.name,
                node.task_cap
            )?;
        }
        NodesCommand::Delete { name } => {
            let node = client.find_node(&name).await?;
            client.delete_node(node.id).await?;
            outln!("node `{name}` deleted")?;
        }
    }
    Ok(())
}

/// Polls the node until it runs nothing, with a spinner that says how many tasks remain.
async fn wait_until_idle(
    client: &ApiClient,
    mut node: NodeResponse,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    loop {
        if node.running_tasks == 0 {
            spinner.finish_and_clear();
            outln!(
                "node `{}` has no running tasks (waited {}s)",
                node.name,
                started.elapsed().as_secs()
            )?;
            return Ok(());
        }
        if !node.online {
            spinner.finish_and_clear();
            anyhow::bail!(
                "node `{}` went offline with {} task(s) still recorded as running",
                node.name,
                node.running_tasks
            );
        }
        if started.elapsed() >= timeout {
            spinner.finish_and_clear();
            anyhow::bail!(
                "node `{}` still runs {} task(s) after {}s",
                node.name,
                node.running_tasks,
                timeout.as_secs()
            );
        }
        spinner.set_message(format!(
            "waiting for node `{}`: {} running task(s)",
            node.name, node.running_tasks
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        node = client
            .get_node(node.id)
            .await
            .with_context(|| format!("while waiting for node `{}`", node.name))?;
    }
}

fn print_table(nodes: &[NodeResponse]) -> anyhow::Result<()> {
    outln!(
        "{:<24} {:<7} {:<8} {:>4} {:>7}  {:<20} {:<8} URL",
        "NAME",
        "ONLINE",
        "DRAINING",
        "CAP",
        "RUNNING",
        "LAST SEEN",
        "VERSION"
    )?;
    for node in nodes {
        let last_seen = node
            .last_seen
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        outln!(
            "{:<24} {:<7} {:<8} {:>4} {:>7}  {:<20} {:<8} {}",
            node.name,
            yes_no(node.online),
            yes_no(node.draining),
            node.task_cap,
            node.running_tasks,
            &last_seen[..last_seen.len().min(19)],
            node.version,
            node.url
        )?;
    }
    Ok(())
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn serde_json_pretty(nodes: &[NodeResponse]) -> String {
    serde_json::to_string_pretty(nodes).expect("nodes always serialize")
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn task_cap_arg(s: &str) -> Result<TaskCap, String> {
    let n: i64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    TaskCap::new(n).map_err(|e| e.to_string())
}

//! `capstan audit list`: who changed what, when and from where, newest first.

use capstan_api::{ApiClient, AuditEvent, AuditQuery, timestamp};
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Show audit rows, newest first, with the filters given.
    List(ListArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The actor's name (a user, a service account, an agent, `admin key`).
    #[arg(long)]
    actor: Option<String>,
    /// person, service, admin_key, agent, anonymous or system.
    #[arg(long)]
    actor_kind: Option<String>,
    /// The user's or agent's id.
    #[arg(long)]
    actor_id: Option<i64>,
    /// project, deployment, agent, user, api_key, …
    #[arg(long)]
    object_kind: Option<String>,
    #[arg(long)]
    object_id: Option<String>,
    /// A project's name or id.
    #[arg(long)]
    project: Option<String>,
    /// An environment's name or id.
    #[arg(long)]
    environment: Option<String>,
    /// An action (`deployment.cancel`) or every action on a kind (`deployment`).
    #[arg(long)]
    action: Option<String>,
    /// Rows at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Rows before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// The most rows to show.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per row (JSON Lines), with before and after.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        AuditCommand::List(list) => list_rows(&client, list).await,
    }
}

async fn list_rows(client: &ApiClient, args: ListArgs) -> anyhow::Result<()> {
    let project_id = match &args.project {
        None => None,
        Some(project) => Some(client.find_project(project).await?.id),
    };
    let environment_id = match &args.environment {
        None => None,
        Some(environment) => Some(find_environment(client, environment).await?),
    };
    let mut query = AuditQuery {
        actor_kind: args.actor_kind,
        actor_id: args.actor_id,
        actor: args.actor,
        object_kind: args.object_kind,
        object_id: args.object_id,
        project_id,
        environment_id,
        action: args.action,
        since: args.since,
        until: args.until,
        limit: Some(u32::try_from(args.limit.clamp(1, 500)).unwrap_or(500)),
        cursor: None,
    };
    if !args.json {
        outln!(
            "{:<27}  {:<24}  {:<16}  {:<16}  {:<26}  {}",
            "AT",
            "ACTOR",
            "METHOD",
            "ADDRESS",
            "ACTION",
            "OBJECT"
        )?;
    }
    let mut shown = 0;
    while shown < args.limit {
        let page = client.list_audit(&query).await?;
        for event in page.items.iter().take(args.limit - shown) {
            if args.json {
                outln!("{}", serde_json::to_string(event)?)?;
            } else {
                outln!("{}", row(event))?;
            }
            shown += 1;
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    Ok(())
}

fn row(event: &AuditEvent) -> String {
    let object = match (&event.object.id, &event.object.name) {
        (Some(id), Some(name)) if name != id => format!("{} {id} ({name})", event.object.kind),
        (Some(id), _) => format!("{} {id}", event.object.kind),
        (None, Some(name)) => format!("{} ({name})", event.object.kind),
        (None, None) => event.object.kind.clone(),
    };
    format!(
        "{:<27}  {:<24}  {:<16}  {:<16}  {:<26}  {object}",
        timestamp::format(event.at),
        event.actor.name,
        event.actor.method,
        event.actor.address.as_deref().unwrap_or("-"),
        event.action,
    )
}

/// An environment by id, or by name in any case.
async fn find_environment(client: &ApiClient, name_or_id: &str) -> anyhow::Result<i64> {
    if let Ok(id) = name_or_id.parse::<i64>() {
        return Ok(id);
    }
    client
        .list_environments()
        .await?
        .items
        .into_iter()
        .find(|e| e.name.eq_ignore_ascii_case(name_or_id))
        .map(|e| e.id)
        .ok_or_else(|| anyhow::anyhow!("there is no environment `{name_or_id}`"))
}

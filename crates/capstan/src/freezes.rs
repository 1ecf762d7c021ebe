//! `capstan freezes …`: freeze windows, when deployments wait instead of starting.

use capstan_api::{
    ApiClient,
    freezes::{FreezeKind, FreezeRequest, FreezeResponse},
};
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct FreezesArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: FreezesCommand,
}

/// A window as written on the command line: fixed (`--start`, `--end`) or recurring
/// (`--cron`, `--duration`, `--time-zone`).
#[derive(Debug, Args)]
struct WindowArgs {
    /// Fixed: when it opens, RFC 3339 (`2026-12-24T00:00:00+01:00`).
    #[arg(long)]
    start: Option<String>,
    /// Fixed: when it closes, RFC 3339.
    #[arg(long)]
    end: Option<String>,
    /// Recurring: five cron fields read on the wall clock of `--time-zone`
    /// (`"0 18 * * FRI"`).
    #[arg(long)]
    cron: Option<String>,
    /// Recurring: how long each opening lasts (`62h`).
    #[arg(long)]
    duration: Option<String>,
    /// Recurring: an IANA time zone (`Europe/Berlin`).
    #[arg(long)]
    time_zone: Option<String>,
    /// Only these projects (repeat); none: every project.
    #[arg(long = "project")]
    projects: Vec<String>,
    /// Only these environments (repeat); none: every environment.
    #[arg(long = "environment")]
    environments: Vec<String>,
    #[arg(long, default_value = "")]
    description: String,
}

impl WindowArgs {
    fn request(self, name: String) -> FreezeRequest {
        FreezeRequest {
            name,
            description: self.description,
            start: self.start,
            end: self.end,
            cron: self.cron,
            duration: self.duration,
            time_zone: self.time_zone,
            projects: self.projects,
            environments: self.environments,
        }
    }
}

#[derive(Debug, Subcommand)]
enum FreezesCommand {
    /// Show every freeze window, and whether it is open now.
    List,
    /// Show one window (by id or name).
    Show { window: String },
    /// Create a window.
    Create {
        name: String,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Replace a window (by id or name) with the one given; deployments it held are
    /// asked again at once.
    Update {
        window: String,
        /// The new name; the old one if left out.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        spec: WindowArgs,
    },
    /// Delete a window; deployments it held are asked again at once.
    Delete { window: String },
}

fn when(at: Option<time::OffsetDateTime>) -> String {
    at.map(capstan_api::timestamp::format)
        .unwrap_or_else(|| "-".to_owned())
}

fn describe(window: &FreezeResponse) -> anyhow::Result<()> {
    let schedule = match window.kind {
        FreezeKind::Fixed => format!("from {} to {}", when(window.start), when(window.end)),
        FreezeKind::Recurring => format!(
            "`{}` in {} for {}",
            window.cron.as_deref().unwrap_or_default(),
            window.time_zone.as_deref().unwrap_or_default(),
            window.duration.as_deref().unwrap_or_default()
        ),
    };
    let all = |list: &[String], what: &str| {
        if list.is_empty() {
            format!("every {what}")
        } else {
            list.join(", ")
        }
    };
    let state = match window.open_until {
        Some(until) => format!("open until {}", capstan_api::timestamp::format(until)),
        None => format!("closed; opens next {}", when(window.next_start)),
    };
    outln!("{:>6}  {}  {schedule}", window.id, window.name)?;
    outln!(
        "        {} in {}; {state}",
        all(&window.projects, "project"),
        all(&window.environments, "environment")
    )?;
    Ok(())
}

pub async fn run(args: FreezesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        FreezesCommand::List => {
            for window in client.list_freezes().await?.items {
                describe(&window)?;
            }
        }
        FreezesCommand::Show { window } => describe(&client.find_freeze(&window).await?)?,
        FreezesCommand::Create { name, window } => {
            let created = client.create_freeze(&window.request(name)).await?;
            outln!("created freeze window {} ({})", created.id, created.name)?;
            describe(&created)?;
        }
        FreezesCommand::Update { window, name, spec } => {
            let found = client.find_freeze(&window).await?;
            let updated = client
                .update_freeze(found.id, &spec.request(name.unwrap_or(found.name)))
                .await?;
            outln!("updated freeze window {} ({})", updated.id, updated.name)?;
            describe(&updated)?;
        }
        FreezesCommand::Delete { window } => {
            let found = client.find_freeze(&window).await?;
            client.delete_freeze(found.id).await?;
            outln!("deleted freeze window {} ({})", found.id, found.name)?;
        }
    }
    Ok(())
}

//! `capstan master-key ...`: make a new master key, see which versions the cluster
//! has, and rotate every sensitive value to the newest one while the cluster runs.

use std::time::Duration;

use capstan_api::{ApiClient, MasterKeyStatus, timestamp};
use capstan_core::TaskState;
use capstan_server::config::MasterKey;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct MasterKeyArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: MasterKeyCommand,
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Print a fresh random key in the form CAPSTAN_MASTER_KEY takes (no server
    /// involved). Keep it where you keep the current one.
    Generate,
    /// Show the key versions, the values under each, and which live node holds which.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Make the newest key version active and re-encrypt every value under it, while
    /// the cluster keeps serving. Every live node must hold the new key first.
    Rotate {
        /// Return once the rotation is queued instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
    },
}

pub async fn run(args: MasterKeyArgs) -> anyhow::Result<()> {
    let client = || ApiClient::new(&args.client.server, args.client.api_key.clone());
    match args.command {
        MasterKeyCommand::Generate => outln!("{}", MasterKey::generate().to_base64())?,
        MasterKeyCommand::Status { json } => {
            let status = client().get_master_key().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?)?;
            } else {
                print_status(&status)?;
            }
        }
        MasterKeyCommand::Rotate { no_wait } => {
            let client = client();
            let rotation = client.rotate_master_key().await?;
            outln!(
                "rotating to master key version {}: task {}, {} value(s) to re-encrypt",
                rotation.version,
                rotation.task_id,
                rotation.secrets_to_rotate
            )?;
            if no_wait {
                outln!(
                    "follow it with `capstan tasks logs --follow {}`",
                    rotation.task_id
                )?;
                return Ok(());
            }
            wait_for_rotation(&client, rotation.task_id, rotation.version).await?;
            outln!(
                "done: every value is encrypted under master key version {}; remove \
                 CAPSTAN_MASTER_KEY_PREVIOUS from the nodes in your next rollout",
                rotation.version
            )?;
        }
    }
    Ok(())
}

/// Shows how many values are under the new version until the task finishes; fails
/// with the task's error unless it succeeded.
async fn wait_for_rotation(client: &ApiClient, task_id: i64, version: i32) -> anyhow::Result<()> {
    let status = client.get_master_key().await?;
    let total: u64 = status.versions.iter().map(|v| v.secrets).sum();
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed} [{bar:30}] {pos}/{len} values under key version {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    progress.set_message(version.to_string());
    loop {
        let task = client.get_task(task_id).await?;
        let status = client.get_master_key().await?;
        let total: u64 = status.versions.iter().map(|v| v.secrets).sum();
        progress.set_length(total);
        progress.set_position(total - status.secrets_not_under(version).min(total));
        if task.state.is_finished() {
            progress.finish_and_clear();
            if task.state != TaskState::Succeeded {
                anyhow::bail!(
                    "the rotation (task {task_id}) {}: {}; its log: `capstan tasks logs {task_id}`",
                    task.state,
                    task.error.as_deref().unwrap_or("no reason given")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_status(status: &MasterKeyStatus) -> anyhow::Result<()> {
    outln!(
        "{:<8} {:<7} {:<28} {:<28} SECRETS",
        "VERSION",
        "ACTIVE",
        "CREATED",
        "ACTIVATED"
    )?;
    for v in &status.versions {
        outln!(
            "{:<8} {:<7} {:<28} {:<28} {}",
            v.version,
            if v.active { "yes" } else { "" },
            timestamp::format(v.created_at),
            v.activated_at
                .map(timestamp::format)
                .unwrap_or_else(|| "-".into()),
            v.secrets
        )?;
    }
    if status.versions.is_empty() {
        outln!("(no key registered: no node has started with CAPSTAN_MASTER_KEY)")?;
    }
    outln!("\n{:<24} KEY VERSIONS HELD", "LIVE NODE")?;
    for n in &status.nodes {
        let held = if n.key_versions.is_empty() {
            "none (no CAPSTAN_MASTER_KEY)".to_owned()
        } else {
            n.key_versions
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!("{:<24} {held}", n.name)?;
    }
    Ok(())
}

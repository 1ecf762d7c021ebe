//! `capstan approvals …`: deployments waiting for approval, approving and denying
//! them, and the rules that make them wait.

use anyhow::bail;
use capstan_api::{
    ApiClient,
    approvals::{ApprovalRuleRequest, ApprovalRuleResponse},
};
use capstan_core::approval::Decision;
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// Deployments waiting for approval that you may see, with what they have so far.
    List,
    /// Approve a deployment (you must be a member of its rule's team).
    Approve {
        deployment: i64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Deny a deployment: it is cancelled, with your note as the reason.
    Deny {
        deployment: i64,
        #[arg(long)]
        note: String,
    },
    /// The approval rules: list, set, delete.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Every rule you may see.
    List,
    /// Require NEEDED approvals from TEAM for deployments to ENVIRONMENT (of one
    /// project with --project, which overrides the environment's rule).
    Set {
        environment: String,
        #[arg(long)]
        team: String,
        #[arg(long)]
        needed: u32,
        #[arg(long)]
        project: Option<i64>,
        /// Let the person who queued a deployment approve it too (off by default).
        #[arg(long)]
        deployer_may_approve: bool,
    },
    /// Delete the rule of ENVIRONMENT (of one project's there with --project).
    Delete {
        environment: String,
        #[arg(long)]
        project: Option<i64>,
    },
}

fn describe_rule(rule: &ApprovalRuleResponse) -> anyhow::Result<()> {
    let place = match &rule.project {
        Some(project) => format!("{project} in {}", rule.environment),
        None => rule.environment.clone(),
    };
    outln!(
        "{:>6}  {:<30}  {} from team {}{}",
        rule.id,
        place,
        rule.needed,
        rule.team,
        if rule.deployer_may_approve {
            ""
        } else {
            ", not the deployer"
        }
    )
}

async fn environment_id(client: &ApiClient, name: &str) -> anyhow::Result<i64> {
    client
        .list_environments()
        .await?
        .items
        .into_iter()
        .find(|e| e.name.eq_ignore_ascii_case(name) || e.id.to_string() == name)
        .map(|e| e.id)
        .ok_or_else(|| anyhow::anyhow!("there is no environment `{name}`"))
}

pub async fn run(args: ApprovalsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        ApprovalsCommand::List => {
            let waiting = client.list_awaiting_approval().await?.items;
            if waiting.is_empty() {
                outln!("no deployment is waiting for approval")?;
            }
            for w in waiting {
                let d = &w.deployment;
                outln!(
                    "{:>6}  {} {} to {}  {} of {} from team {}{}",
                    d.id,
                    d.project,
                    d.release,
                    d.environment,
                    w.given,
                    w.needed,
                    w.team,
                    w.queued_by
                        .as_ref()
                        .map(|by| format!(", queued by {by}"))
                        .unwrap_or_default()
                )?;
                for a in &w.approvals {
                    outln!("        {} by {}: {}", a.decision, a.by, a.note)?;
                }
            }
        }
        ApprovalsCommand::Approve { deployment, note } => {
            let shown = client
                .decide_deployment(deployment, Decision::Approve, &note)
                .await?;
            match &shown.blocked_by {
                Some(blocked) => outln!(
                    "approved deployment {deployment}; it waits: {}",
                    blocked.summary
                )?,
                None => outln!("approved deployment {deployment}; it may start")?,
            }
        }
        ApprovalsCommand::Deny { deployment, note } => {
            if note.trim().is_empty() {
                bail!("a denial says why: give --note");
            }
            client
                .decide_deployment(deployment, Decision::Deny, &note)
                .await?;
            outln!("denied deployment {deployment}; it is cancelled")?;
        }
        ApprovalsCommand::Rules { command } => match command {
            RulesCommand::List => {
                for rule in client.list_approval_rules().await?.items {
                    describe_rule(&rule)?;
                }
            }
            RulesCommand::Set {
                environment,
                team,
                needed,
                project,
                deployer_may_approve,
            } => {
                let environment_id = environment_id(&client, &environment).await?;
                let rule = client
                    .set_approval_rule(
                        environment_id,
                        &ApprovalRuleRequest {
                            project_id: project,
                            team,
                            needed,
                            deployer_may_approve,
                        },
                    )
                    .await?;
                describe_rule(&rule)?;
            }
            RulesCommand::Delete {
                environment,
                project,
            } => {
                let id = environment_id(&client, &environment).await?;
                client.delete_approval_rule(id, project).await?;
                outln!("deleted the approval rule")?;
            }
        },
    }
    Ok(())
}

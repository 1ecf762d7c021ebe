//! `capstan lifecycles …`: the order releases are promoted through environments.

use anyhow::{Context, bail};
use capstan_api::{
    ApiClient,
    lifecycles::{LifecycleRequest, LifecycleResponse, PhaseBody, PhaseRule, RetentionBody},
};
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct LifecyclesArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: LifecyclesCommand,
}

#[derive(Debug, Subcommand)]
enum LifecyclesCommand {
    /// Show every lifecycle with its phases.
    List,
    /// Show one lifecycle (by id or name).
    Show { lifecycle: String },
    /// Create a lifecycle: `--phase NAME=ENV[,ENV…][:RULE][:auto][:keep=N|:keep=Dd]` in
    /// promotion order, RULE being `all` (the default), `optional`, or a number N for
    /// "at least N"; `auto` makes the phase automatic; `keep=10` keeps the 10 newest
    /// releases whose latest phase it is, `keep=30d` those of the last 30 days.
    Create {
        name: String,
        #[arg(long = "phase", required = true)]
        phases: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace a lifecycle's phases (all of them, written as for `create`), and its
    /// name or description if given; what is not given stays.
    Update {
        lifecycle: String,
        #[arg(long = "phase")]
        phases: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a lifecycle no project uses.
    Delete { lifecycle: String },
}

/// `Test=Test,Staging:1:auto:keep=10` → phase Test, at least 1 of Test and Staging,
/// automatic, keeping 10 releases.
fn parse_phase(text: &str) -> anyhow::Result<PhaseBody> {
    let (name, rest) = text.split_once('=').with_context(|| {
        format!("phase `{text}`: expected NAME=ENV[,ENV…][:RULE][:auto][:keep=N|:keep=Dd]")
    })?;
    let mut parts = rest.split(':');
    let environments = parts.next().unwrap_or_default();
    let (mut rule, mut min_count) = (PhaseRule::All, None);
    let (mut automatic, mut retention) = (false, None);
    for part in parts {
        match part.trim() {
            "all" => rule = PhaseRule::All,
            "optional" => rule = PhaseRule::Optional,
            "auto" => automatic = true,
            keep if keep.starts_with("keep=") => {
                let value = &keep["keep=".len()..];
                retention = Some(match value.strip_suffix('d') {
                    Some(days) => RetentionBody {
                        keep_releases: None,
                        keep_days: Some(days.parse().with_context(|| {
                            format!("phase `{text}`: keep=Dd takes a number of days")
                        })?),
                    },
                    None => RetentionBody {
                        keep_releases: Some(value.parse().with_context(|| {
                            format!("phase `{text}`: keep=N takes a number of releases")
                        })?),
                        keep_days: None,
                    },
                });
            }
            n => match n.parse::<u32>() {
                Ok(n) => (rule, min_count) = (PhaseRule::AtLeast, Some(n)),
                Err(_) => bail!(
                    "phase `{text}`: the rule is all, optional or a number, not `{n}` (or `auto`, `keep=N`, `keep=Dd`)"
                ),
            },
        }
    }
    Ok(PhaseBody {
        name: name.trim().to_owned(),
        environments: environments
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        rule,
        min_count,
        automatic,
        retention,
    })
}

fn describe(lifecycle: &LifecycleResponse) -> anyhow::Result<()> {
    outln!("{:>6}  {}", lifecycle.id, lifecycle.name)?;
    for (i, phase) in lifecycle.phases.iter().enumerate() {
        let rule = match (phase.rule, phase.min_count) {
            (PhaseRule::All, _) => "all of".to_owned(),
            (PhaseRule::Optional, _) => "optional:".to_owned(),
            (PhaseRule::AtLeast, n) => format!("at least {} of", n.unwrap_or(1)),
        };
        let automatic = if phase.automatic { ", automatic" } else { "" };
        let keeps = match &phase.retention {
            Some(RetentionBody {
                keep_releases: Some(n),
                ..
            }) => format!(", keeps {n} release(s)"),
            Some(RetentionBody {
                keep_days: Some(d), ..
            }) => format!(", keeps releases {d} day(s)"),
            _ => String::new(),
        };
        outln!(
            "        {}. {:<20}  {rule} {}{automatic}{keeps}",
            i + 1,
            phase.name,
            phase.environments.join(", ")
        )?;
    }
    Ok(())
}

pub async fn run(args: LifecyclesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        LifecyclesCommand::List => {
            for lifecycle in client.list_lifecycles().await?.items {
                describe(&lifecycle)?;
            }
        }
        LifecyclesCommand::Show { lifecycle } => {
            describe(&client.find_lifecycle(&lifecycle).await?)?;
        }
        LifecyclesCommand::Create {
            name,
            phases,
            description,
        } => {
            let phases = phases
                .iter()
                .map(|p| parse_phase(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let created = client
                .create_lifecycle(&LifecycleRequest {
                    name,
                    description,
                    phases,
                })
                .await?;
            outln!("created lifecycle {} ({})", created.id, created.name)?;
        }
        LifecyclesCommand::Update {
            lifecycle,
            phases,
            name,
            description,
        } => {
            let current = client.find_lifecycle(&lifecycle).await?;
            let phases = if phases.is_empty() {
                current.phases
            } else {
                phases
                    .iter()
                    .map(|p| parse_phase(p))
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            let updated = client
                .update_lifecycle(
                    current.id,
                    &LifecycleRequest {
                        name: name.unwrap_or(current.name),
                        description: description.unwrap_or(current.description),
                        phases,
                    },
                )
                .await?;
            outln!("updated lifecycle {} ({})", updated.id, updated.name)?;
            describe(&updated)?;
        }
        LifecyclesCommand::Delete { lifecycle } => {
            let lifecycle = client.find_lifecycle(&lifecycle).await?;
            client.delete_lifecycle(lifecycle.id).await?;
            outln!("deleted lifecycle {} ({})", lifecycle.id, lifecycle.name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_reads_name_environments_and_rule() {
        let phase = parse_phase("Test=Test, Staging:1").unwrap();
        assert_eq!(phase.name, "Test");
        assert_eq!(phase.environments, ["Test", "Staging"]);
        assert_eq!((phase.rule, phase.min_count), (PhaseRule::AtLeast, Some(1)));
        assert_eq!(parse_phase("Dev=Dev").unwrap().rule, PhaseRule::All);
        let phase = parse_phase("Test=Test:auto:keep=30d").unwrap();
        assert!(phase.automatic);
        assert_eq!(phase.rule, PhaseRule::All);
        assert_eq!(phase.retention.unwrap().keep_days, Some(30));
        let phase = parse_phase("Prod=Prod:2:keep=5").unwrap();
        assert_eq!(phase.retention.unwrap().keep_releases, Some(5));
        assert!(!phase.automatic);
        assert!(parse_phase("Dev").is_err());
        assert!(parse_phase("Dev=Dev:sometimes").is_err());
    }
}

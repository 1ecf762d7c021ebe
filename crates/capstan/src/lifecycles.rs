//! `capstan lifecycles …`: the order releases are promoted through environments.

use anyhow::{Context, bail};
use capstan_api::{
    ApiClient,
    lifecycles::{LifecycleRequest, LifecycleResponse, PhaseBody, PhaseRule},
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
    /// Create a lifecycle: `--phase NAME=ENV[,ENV…][:RULE]` in promotion order, RULE
    /// being `all` (the default), `optional`, or a number N for "at least N".
    Create {
        name: String,
        #[arg(long = "phase", required = true)]
        phases: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a lifecycle no project uses.
    Delete { lifecycle: String },
}

/// `Test=Test,Staging:1` → phase Test, at least 1 of Test and Staging.
fn parse_phase(text: &str) -> anyhow::Result<PhaseBody> {
    let (name, rest) = text
        .split_once('=')
        .with_context(|| format!("phase `{text}`: expected NAME=ENV[,ENV…][:RULE]"))?;
    let (environments, rule) = rest.split_once(':').unwrap_or((rest, "all"));
    let (rule, min_count) = match rule {
        "all" => (PhaseRule::All, None),
        "optional" => (PhaseRule::Optional, None),
        n => match n.parse::<u32>() {
            Ok(n) => (PhaseRule::AtLeast, Some(n)),
            Err(_) => bail!("phase `{text}`: the rule is all, optional or a number, not `{n}`"),
        },
    };
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
        outln!(
            "        {}. {:<20}  {rule} {}",
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
        assert!(parse_phase("Dev").is_err());
        assert!(parse_phase("Dev=Dev:sometimes").is_err());
    }
}

//! `capstan teams …`: teams, their members and their grants.

use capstan_api::{
    ApiClient,
    access::{CreateGrantRequest, CreateTeamRequest},
};
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct TeamsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TeamsCommand,
}

#[derive(Debug, Subcommand)]
enum TeamsCommand {
    /// Create a team.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show the teams.
    List,
    /// Delete a team: its members lose its grants on every node at once.
    Delete { team: String },
    /// Show a team's members.
    Members { team: String },
    /// Add a user (by name or id) to a team.
    AddMember { team: String, user: String },
    /// Take a user out of a team.
    RemoveMember { team: String, user: String },
    /// Show a team's grants.
    Grants { team: String },
    /// Give a team a role in some projects and environments (all when none is named).
    Grant {
        team: String,
        /// The role's name or id.
        #[arg(long)]
        role: String,
        /// A project by name or id; repeat for several. None: every project.
        #[arg(long = "project")]
        projects: Vec<String>,
        /// An environment by name or id; repeat for several. None: every environment.
        #[arg(long = "environment")]
        environments: Vec<String>,
    },
    /// Take a grant (by id, from `capstan teams grants`) back.
    Revoke { team: String, grant: i64 },
}

pub async fn run(args: TeamsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        TeamsCommand::Create { name, description } => {
            let team = client
                .create_team(&CreateTeamRequest { name, description })
                .await?;
            outln!("created team {} ({})", team.id, team.name)?;
        }
        TeamsCommand::List => {
            outln!("{:>6}  {:<32}  DESCRIPTION", "ID", "NAME")?;
            for team in client.list_teams().await?.items {
                outln!("{:>6}  {:<32}  {}", team.id, team.name, team.description)?;
            }
        }
        TeamsCommand::Delete { team } => {
            let team = client.find_team(&team).await?;
            client.delete_team(team.id).await?;
            outln!("deleted team {} ({})", team.id, team.name)?;
        }
        TeamsCommand::Members { team } => {
            let team = client.find_team(&team).await?;
            outln!("{:>6}  {:<32}  KIND", "ID", "NAME")?;
            for member in client.list_members(team.id).await?.items {
                outln!(
                    "{:>6}  {:<32}  {}",
                    member.user_id,
                    member.name,
                    member.kind
                )?;
            }
        }
        TeamsCommand::AddMember { team, user } => {
            let team = client.find_team(&team).await?;
            let user = client.find_user(&user).await?;
            client.add_member(team.id, user.id).await?;
            outln!("{} is a member of {}", user.name, team.name)?;
        }
        TeamsCommand::RemoveMember { team, user } => {
            let team = client.find_team(&team).await?;
            let user = client.find_user(&user).await?;
            client.remove_member(team.id, user.id).await?;
            outln!("{} is no longer a member of {}", user.name, team.name)?;
        }
        TeamsCommand::Grants { team } => {
            let team = client.find_team(&team).await?;
            outln!(
                "{:>6}  {:<24}  {:<24}  ENVIRONMENTS",
                "ID",
                "ROLE",
                "PROJECTS"
            )?;
            for grant in client.list_grants(team.id).await?.items {
                outln!(
                    "{:>6}  {:<24}  {:<24}  {}",
                    grant.id,
                    grant.role_name,
                    ids(grant.project_ids.as_deref()),
                    ids(grant.environment_ids.as_deref())
                )?;
            }
        }
        TeamsCommand::Grant {
            team,
            role,
            projects,
            environments,
        } => {
            let team = client.find_team(&team).await?;
            let role = client.find_role(&role).await?;
            let mut project_ids = Vec::new();
            for project in &projects {
                project_ids.push(client.find_project(project).await?.id);
            }
            let environment_ids = environment_ids(&client, &environments).await?;
            let grant = client
                .create_grant(
                    team.id,
                    &CreateGrantRequest {
                        role_id: role.id,
                        project_ids: (!projects.is_empty()).then_some(project_ids),
                        environment_ids: (!environments.is_empty()).then_some(environment_ids),
                    },
                )
                .await?;
            outln!(
                "granted {} to {} on projects {}, environments {} (grant {})",
                role.name,
                team.name,
                names(&projects),
                names(&environments),
                grant.id
            )?;
        }
        TeamsCommand::Revoke { team, grant } => {
            let team = client.find_team(&team).await?;
            client.delete_grant(team.id, grant).await?;
            outln!("took grant {grant} from {}", team.name)?;
        }
    }
    Ok(())
}

async fn environment_ids(client: &ApiClient, named: &[String]) -> anyhow::Result<Vec<i64>> {
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let known = client.list_environments().await?.items;
    named
        .iter()
        .map(|name| {
            known
                .iter()
                .find(|e| e.id.to_string() == *name || e.name.eq_ignore_ascii_case(name))
                .map(|e| e.id)
                .ok_or_else(|| anyhow::anyhow!("no environment is named `{name}`"))
        })
        .collect()
}

fn names(named: &[String]) -> String {
    if named.is_empty() {
        "all".to_owned()
    } else {
        format!("[{}]", named.join(", "))
    }
}

fn ids(ids: Option<&[i64]>) -> String {
    match ids {
        None => "all".to_owned(),
        Some(ids) => format!(
            "[{}]",
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

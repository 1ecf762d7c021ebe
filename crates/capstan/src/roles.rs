//! `capstan roles …`: the built-in roles and custom ones.

use capstan_api::{
    ApiClient,
    access::{CreateRoleRequest, UpdateRoleRequest},
};
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct RolesArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: RolesCommand,
}

#[derive(Debug, Subcommand)]
enum RolesCommand {
    /// Show the built-in and custom roles with their permissions.
    List,
    /// Create a custom role.
    Create {
        name: String,
        /// A permission such as `view` or `deploy`; repeat for several.
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a custom role's permissions (every node applies them at once).
    Update {
        role: String,
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
    /// Delete a custom role no grant uses.
    Delete { role: String },
}

pub async fn run(args: RolesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        RolesCommand::List => {
            outln!("{:>6}  {:<24}  {:<8}  PERMISSIONS", "ID", "NAME", "KIND")?;
            for role in client.list_roles().await?.items {
                outln!(
                    "{:>6}  {:<24}  {:<8}  {}",
                    role.id,
                    role.name,
                    if role.built_in { "built-in" } else { "custom" },
                    role.permissions.join(", ")
                )?;
            }
        }
        RolesCommand::Create {
            name,
            permissions,
            description,
        } => {
            let role = client
                .create_role(&CreateRoleRequest {
                    name,
                    description,
                    permissions,
                })
                .await?;
            outln!("created role {} ({})", role.id, role.name)?;
        }
        RolesCommand::Update { role, permissions } => {
            let role = client.find_role(&role).await?;
            let role = client
                .update_role(
                    role.id,
                    &UpdateRoleRequest {
                        permissions: Some(permissions),
                        ..Default::default()
                    },
                )
                .await?;
            outln!("{} now allows {}", role.name, role.permissions.join(", "))?;
        }
        RolesCommand::Delete { role } => {
            let role = client.find_role(&role).await?;
            client.delete_role(role.id).await?;
            outln!("deleted role {} ({})", role.id, role.name)?;
        }
    }
    Ok(())
}

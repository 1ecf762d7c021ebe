//! `capstan users …` and `capstan api-keys …`.

use capstan_api::{
    ApiClient, CreateApiKeyRequest, CreateUserRequest, SetPasswordRequest, UpdateUserRequest,
    UserKind, UserQuery, UserResponse, timestamp,
};
use clap::{Args, Subcommand, ValueEnum};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// A person.
    Person,
    /// A service account: API keys only, never a login.
    Service,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a person or a service account.
    Create {
        name: String,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Show users and service accounts.
    List,
    /// Print a user as JSON.
    Show { user: String },
    /// Disable a user: its API keys stop working at once.
    Disable { user: String },
    /// Enable a disabled user again.
    Enable { user: String },
    /// Delete a user with its API keys.
    Delete { user: String },
    /// Set a person's password (12 to 256 characters), for signing in to the web UI
    /// and `capstan login`; asked on the terminal.
    Password {
        user: String,
        /// Read the password from the first line of standard input instead.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Args)]
pub struct ApiKeysArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ApiKeysCommand,
}

#[derive(Debug, Subcommand)]
enum ApiKeysCommand {
    /// Create an API key; it is printed once and cannot be shown again.
    Create {
        /// The owner's name or id.
        #[arg(long)]
        user: String,
        /// What the key is for.
        #[arg(long)]
        purpose: String,
        /// How long it lives, such as `90d` (default 180 days).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Show a user's keys (never their secrets).
    List {
        #[arg(long)]
        user: String,
    },
    /// Revoke a key: it stops working on every node at once.
    Revoke {
        #[arg(long)]
        user: String,
        key_id: String,
    },
}

pub async fn users(args: UsersArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        UsersCommand::Create {
            name,
            kind,
            display_name,
            email,
        } => {
            let kind = match kind {
                Kind::Person => UserKind::Person,
                Kind::Service => UserKind::Service,
            };
            let user = client
                .create_user(&CreateUserRequest {
                    name,
                    display_name,
                    email,
                    kind,
                })
                .await?;
            outln!("created {} {} ({})", user.kind.as_str(), user.id, user.name)?;
        }
        UsersCommand::List => {
            let mut query = UserQuery {
                limit: Some(500),
                ..Default::default()
            };
            outln!("{:>6}  {:<32}  {:<8}  {:<8}", "ID", "NAME", "KIND", "STATE")?;
            loop {
                let page = client.list_users(&query).await?;
                for u in &page.items {
                    outln!(
                        "{:>6}  {:<32}  {:<8}  {:<8}",
                        u.id,
                        u.name,
                        u.kind.as_str(),
                        state(u)
                    )?;
                }
                match page.next {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
        }
        UsersCommand::Show { user } => {
            let user = client.find_user(&user).await?;
            outln!("{}", serde_json::to_string_pretty(&user)?)?;
        }
        UsersCommand::Disable { user } => set_disabled(&client, &user, true).await?,
        UsersCommand::Enable { user } => set_disabled(&client, &user, false).await?,
        UsersCommand::Delete { user } => {
            let user = client.find_user(&user).await?;
            client.delete_user(user.id).await?;
            outln!("deleted {} {} ({})", user.kind.as_str(), user.id, user.name)?;
        }
        UsersCommand::Password {
            user,
            password_stdin,
        } => {
            let user = client.find_user(&user).await?;
            let password = crate::login::read_password(password_stdin)?;
            client
                .set_password(
                    user.id,
                    &SetPasswordRequest {
                        password,
                        old_password: None,
                    },
                )
                .await?;
            outln!("set the password of {}", user.name)?;
        }
    }
    Ok(())
}

async fn set_disabled(client: &ApiClient, user: &str, disabled: bool) -> anyhow::Result<()> {
    let user = client.find_user(user).await?;
    let user = client
        .update_user(
            user.id,
            &UpdateUserRequest {
                disabled: Some(disabled),
                ..Default::default()
            },
        )
        .await?;
    outln!("{} is {}", user.name, state(&user))?;
    Ok(())
}

fn state(user: &UserResponse) -> &'static str {
    if user.disabled { "disabled" } else { "enabled" }
}

pub async fn api_keys(args: ApiKeysArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        ApiKeysCommand::Create {
            user,
            purpose,
            expires_in,
        } => {
            let user = client.find_user(&user).await?;
            let created = client
                .create_api_key(
                    user.id,
                    &CreateApiKeyRequest {
                        purpose,
                        expires_in,
                    },
                )
                .await?;
            eprintln!(
                "created API key {} of {}, expiring {}; it is shown only now:",
                created.api_key.key_id,
                user.name,
                timestamp::format(created.api_key.expires_at)
            );
            outln!("{}", created.key)?;
        }
        ApiKeysCommand::List { user } => {
            let user = client.find_user(&user).await?;
            let keys = client.list_api_keys(user.id).await?;
            outln!(
                "{:<12}  {:<24}  {:<20}  {:<20}  {:<8}",
                "KEY ID",
                "PURPOSE",
                "EXPIRES",
                "LAST USED",
                "STATE"
            )?;
            for key in &keys.items {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else if key.expires_at <= time::OffsetDateTime::now_utc() {
                    "expired"
                } else {
                    "live"
                };
                outln!(
                    "{:<12}  {:<24}  {:<20}  {:<20}  {:<8}",
                    key.key_id,
                    key.purpose,
                    timestamp::format(key.expires_at),
                    key.last_used_at
                        .map_or("never".to_owned(), timestamp::format),
                    state
                )?;
            }
        }
        ApiKeysCommand::Revoke { user, key_id } => {
            let user = client.find_user(&user).await?;
            client.revoke_api_key(user.id, &key_id).await?;
            outln!("revoked API key {key_id} of {}", user.name)?;
        }
    }
    Ok(())
}

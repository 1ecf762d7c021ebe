//! `capstan login` and `capstan logout`: a person's password (or a single sign-on in
//! the browser) buys an API key, kept in a file only its owner can read, and used by
//! every command when CAPSTAN_API_KEY is unset; signing out revokes the key and
//! deletes the file.
//!
//! `--browser` listens on a loopback port, sends the browser to the cluster's OpenID
//! sign-in with that port, and receives a one-time code there once the person has
//! signed in; the code (valid for two minutes, once) is exchanged for the key.

use std::{
    io::{BufRead as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::PathBuf,
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::output::outln;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// A node's or the load balancer's URL.
    #[arg(long, env = "CAPSTAN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The person to sign in as (with a password).
    #[arg(long, required_unless_present = "browser", conflicts_with = "browser")]
    user: Option<String>,
    /// Sign in through the cluster's single sign-on in a browser instead.
    #[arg(long)]
    browser: bool,
    /// With --browser: only print the URL to open, do not start a browser.
    #[arg(long, requires = "browser")]
    no_open: bool,
    /// Read the password from the first line of standard input instead of the terminal.
    #[arg(long)]
    password_stdin: bool,
    /// What the key is for, as its list shows it [default: capstan CLI on <host>].
    #[arg(long)]
    purpose: Option<String>,
    /// How long the key lives, e.g. 30d.
    #[arg(long, default_value = "30d")]
    expires_in: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// A node's or the load balancer's URL [default: the one signed in to].
    #[arg(long, env = "CAPSTAN_SERVER")]
    server: Option<String>,
}

/// What the credentials file holds.
#[derive(Serialize, Deserialize)]
struct Credentials {
    server: String,
    user_id: i64,
    key_id: String,
    key: String,
}

/// `$XDG_CONFIG_HOME/capstan/credentials`, or `~/.config/capstan/credentials`.
fn credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("capstan").join("credentials"))
}

fn read_credentials() -> Option<Credentials> {
    let text = std::fs::read_to_string(credentials_path()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// The key `capstan login` stored, if any.
pub fn stored_key() -> Option<String> {
    read_credentials().map(|c| c.key)
}

fn write_credentials(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = credentials_path()
        .context("cannot tell where to keep the key: set HOME or XDG_CONFIG_HOME")?;
    let dir = path
        .parent()
        .context("the credentials path has no folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(".credentials.new");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    file.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

pub(crate) fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal (use --password-stdin)")?
    };
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password)
}

async fn problem(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let detail = body["detail"].as_str().unwrap_or("no detail");
    anyhow::anyhow!("{detail} ({status})")
}

/// How long `--browser` waits for the person to sign in.
const BROWSER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Waits on `listener` for the browser to bring the one-time code.
async fn receive_code(listener: tokio::net::TcpListener) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0u8; 8192];
        let read = stream.read(&mut buffer).await.unwrap_or(0);
        let request = String::from_utf8_lossy(&buffer[..read]);
        let target = request
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or_default();
        let code = target.split_once('?').and_then(|(_, query)| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "code")
                .map(|(_, value)| value.into_owned())
        });
        let (status, text) = if code.is_some() {
            ("200 OK", "Signed in to Capstan. You can close this window.")
        } else {
            ("404 Not Found", "Not the sign-in callback.")
        };
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            )
            .await;
        if let Some(code) = code {
            return Ok(code);
        }
    }
}

async fn browser_login(
    server: &str,
    no_open: bool,
    purpose: String,
    expires_in: String,
) -> anyhow::Result<reqwest::Response> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port for the browser's answer")?;
    let port = listener.local_addr()?.port();
    let url = format!("{server}/api/login/oidc?cli_port={port}");
    outln!("Open this URL in your browser to sign in:\n{url}")?;
    if !no_open {
        // Best effort: the URL is printed either way.
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let code = tokio::time::timeout(BROWSER_WAIT, receive_code(listener))
        .await
        .context("nobody signed in within 5 minutes")??;
    reqwest::Client::new()
        .post(format!("{server}/api/login/cli-code"))
        .json(&capstan_api::CodeKeyRequest {
            code,
            purpose,
            expires_in: Some(expires_in),
        })
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let purpose = args.purpose.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("capstan CLI on {}", host.trim()).trim().to_owned()
    });
    let server = args.server.trim_end_matches('/').to_owned();
    let response = match &args.user {
        None => browser_login(&server, args.no_open, purpose, args.expires_in).await?,
        Some(user) => {
            let password = read_password(args.password_stdin)?;
            reqwest::Client::new()
                .post(format!("{server}/api/login/api-key"))
                .json(&capstan_api::LoginKeyRequest {
                    name: user.clone(),
                    password,
                    purpose,
                    expires_in: Some(args.expires_in),
                })
                .send()
                .await
                .with_context(|| format!("cannot reach {server}"))?
        }
    };
    if !response.status().is_success() {
        return Err(problem(response).await.context("cannot sign in"));
    }
    let created: capstan_api::CreatedApiKey = response.json().await?;
    let path = write_credentials(&Credentials {
        server,
        user_id: created.api_key.user_id,
        key_id: created.api_key.key_id.clone(),
        key: created.key,
    })?;
    outln!(
        "signed in as {}: key {} (expires {}) kept in {}",
        args.user
            .clone()
            .unwrap_or_else(|| format!("user {}", created.api_key.user_id)),
        created.api_key.key_id,
        created
            .api_key
            .expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        path.display()
    )?;
    Ok(())
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let Some(credentials) = read_credentials() else {
        outln!("not signed in: there is no stored key")?;
        return Ok(());
    };
    let server = args.server.unwrap_or_else(|| credentials.server.clone());
    let server = server.trim_end_matches('/');
    let response = reqwest::Client::new()
        .delete(format!(
            "{server}/api/users/{}/api-keys/{}",
            credentials.user_id, credentials.key_id
        ))
        .bearer_auth(&credentials.key)
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    // A key that no longer works has nothing left to revoke.
    if !(response.status().is_success() || response.status() == reqwest::StatusCode::UNAUTHORIZED) {
        return Err(problem(response)
            .await
            .context("cannot revoke the stored key"));
    }
    if let Some(path) = credentials_path() {
        std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
    }
    outln!(
        "signed out: key {} revoked and forgotten",
        credentials.key_id
    )?;
    Ok(())
}

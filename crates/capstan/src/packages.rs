//! `capstan packages ...`: push, list and delete packages of the built-in feed.

use std::path::PathBuf;

use anyhow::Context as _;
use capstan_api::{ApiClient, ClientError, PackageQuery, PackageResponse, timestamp};
use capstan_core::{PackageFileName, format_size};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncReadExt;

use crate::nodes::ClientArgs;
use crate::output::outln;

/// Bytes read from the file per chunk sent.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Args)]
pub struct PackagesArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: PackagesCommand,
}

#[derive(Debug, Subcommand)]
enum PackagesCommand {
    /// Upload a package file named <id>.<version>.<extension>, e.g. MyApp.Web.1.2.3.zip.
    Push {
        file: PathBuf,
        /// Replace the version if the feed already has it.
        #[arg(long)]
        replace: bool,
        /// Print the stored package as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List packages with their newest version, or one package's versions.
    List {
        /// Only this package id: list its versions, newest first.
        id: Option<String>,
        /// Only ids containing this text.
        #[arg(long)]
        search: Option<String>,
        /// How many to show (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Delete one version.
    Delete {
        id: String,
        #[arg(value_name = "VERSION")]
        package_version: String,
    },
}

pub async fn run(args: PackagesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        PackagesCommand::Push {
            file,
            replace,
            json,
        } => push(&client, &file, replace, json).await,
        PackagesCommand::List {
            id: Some(id),
            limit,
            json,
            ..
        } => {
            let page = client
                .package_versions(
                    &id,
                    &PackageQuery {
                        limit: Some(limit),
                        ..PackageQuery::default()
                    },
                )
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&page)?)?;
            } else {
                print_versions(&page.items)?;
            }
            Ok(())
        }
        PackagesCommand::List {
            id: None,
            search,
            limit,
            json,
        } => {
            let page = client
                .list_packages(&PackageQuery {
                    q: search,
                    limit: Some(limit),
                    cursor: None,
                })
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&page)?)?;
                return Ok(());
            }
            outln!(
                "{:<40} {:<20} {:>8} {:>12} LAST UPLOAD",
                "ID",
                "LATEST",
                "VERSIONS",
                "SIZE"
            )?;
            for p in page.items {
                outln!(
                    "{:<40} {:<20} {:>8} {:>12} {}",
                    p.id,
                    p.latest_version,
                    p.versions,
                    format_size(p.total_size),
                    timestamp::format(p.last_uploaded_at)
                )?;
            }
            Ok(())
        }
        PackagesCommand::Delete {
            id,
            package_version,
        } => {
            client.delete_package(&id, &package_version).await?;
            outln!("deleted {id} {package_version}")?;
            Ok(())
        }
    }
}

async fn push(client: &ApiClient, path: &PathBuf, replace: bool, json: bool) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    let parsed = PackageFileName::parse(name).map_err(anyhow::Error::msg)?;
    // The server refuses a duplicate before reading the body, but an HTTP client still
    // sending a large body sees only the closed connection: ask first.
    if !replace {
        match client
            .get_package(parsed.id.as_str(), parsed.version.as_str())
            .await
        {
            Ok(_) => anyhow::bail!(
                "package {} {} already exists; push with --replace to replace it",
                parsed.id,
                parsed.version
            ),
            Err(ClientError::Api(problem)) if problem.status == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let length = file.metadata().await?.len();

    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("pushing {} {}", parsed.id, parsed.version));
    let counter = bar.clone();
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
    .inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counter.inc(chunk.len() as u64);
        }
    });
    let stored = client
        .push_package(
            parsed.id.as_str(),
            parsed.version.as_str(),
            parsed.extension,
            replace,
            length,
            reqwest::Body::wrap_stream(chunks),
        )
        .await;
    bar.finish_and_clear();
    let stored = stored?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&stored)?)?;
    } else {
        outln!(
            "pushed {} {} ({}, sha256 {})",
            stored.id,
            stored.version,
            format_size(stored.size),
            stored.sha256
        )?;
    }
    Ok(())
}

fn print_versions(versions: &[PackageResponse]) -> anyhow::Result<()> {
    outln!(
        "{:<24} {:<8} {:>12} {:<28} SHA256",
        "VERSION",
        "FORMAT",
        "SIZE",
        "UPLOADED"
    )?;
    for v in versions {
        outln!(
            "{:<24} {:<8} {:>12} {:<28} {}",
            v.version,
            v.extension,
            format_size(v.size),
            timestamp::format(v.uploaded_at),
            v.sha256
        )?;
    }
    Ok(())
}

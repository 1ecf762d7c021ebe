//! `capstan projects …` and `capstan releases …`.

use std::path::PathBuf;

use anyhow::Context as _;
use capstan_api::{
    ApiClient, CreateReleaseRequest, PackageSelection, ProcessRequest, ProjectQuery,
    ProjectRequest, ReleaseQuery, VariablesRequest, timestamp,
};
use clap::{Args, Subcommand};

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct ProjectsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ProjectsCommand,
}

#[derive(Debug, Subcommand)]
enum ProjectsCommand {
    /// Show projects.
    List {
        /// Only names containing this text.
        #[arg(long)]
        search: Option<String>,
    },
    /// Add a project.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a project with its process, variables and releases.
    Delete { project: String },
    /// Print a project's process as JSON (edit it, then `process-put`).
    Process { project: String },
    /// Save a process from a JSON file as `process` printed it; refused if someone
    /// saved in between.
    ProcessPut { project: String, file: PathBuf },
    /// Print a project's variables as JSON (sensitive values are not shown).
    Variables { project: String },
    /// Save variables from a JSON file as `variables` printed it; a sensitive variable
    /// without a `value` keeps its value.
    VariablesPut { project: String, file: PathBuf },
    /// Show, or with `--environment`/`--off` set, where a failed deployment of the
    /// project is rolled back once, automatically.
    AutoRollback {
        project: String,
        /// Roll back automatically in this environment (repeat for several); replaces
        /// the list.
        #[arg(long = "environment", conflicts_with = "off")]
        environments: Vec<String>,
        /// Turn automatic rollback off everywhere.
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ReleasesCommand,
}

#[derive(Debug, Subcommand)]
enum ReleasesCommand {
    /// Snapshot a project's process, variables and package versions.
    #[command(disable_version_flag = true)]
    Create {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// Default: the newest release's version with its last number raised.
        #[arg(long)]
        version: Option<String>,
        #[arg(long, default_value = "")]
        notes: String,
        /// Deploy this version of a package, PACKAGE=VERSION (repeatable).
        #[arg(long = "package", value_name = "PACKAGE=VERSION")]
        packages: Vec<String>,
    },
    /// Show a project's releases, newest first.
    List {
        #[arg(long)]
        project: String,
    },
    /// Print a release as JSON.
    Show { id: i64 },
}

pub async fn projects(args: ProjectsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        ProjectsCommand::List { search } => {
            let mut query = ProjectQuery {
                search,
                limit: Some(500),
                ..Default::default()
            };
            outln!(
                "{:>6}  {:<32}  {:>7}  {:>9}",
                "ID",
                "NAME",
                "PROCESS",
                "VARIABLES"
            )?;
            loop {
                let page = client.list_projects(&query).await?;
                for p in &page.items {
                    outln!(
                        "{:>6}  {:<32}  {:>7}  {:>9}",
                        p.id,
                        p.name,
                        p.process_version,
                        p.variables_version
                    )?;
                }
                match page.next {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
        }
        ProjectsCommand::Create { name, description } => {
            let project = client
                .create_project(&ProjectRequest { name, description })
                .await?;
            outln!("created project {} ({})", project.id, project.name)?;
        }
        ProjectsCommand::AutoRollback {
            project,
            environments,
            off,
        } => {
            let project = client.find_project(&project).await?;
            let shown = if off || !environments.is_empty() {
                client
                    .set_auto_rollback(
                        project.id,
                        &capstan_api::auto_rollbacks::AutoRollback { environments },
                    )
                    .await?
            } else {
                client.auto_rollback(project.id).await?
            };
            if shown.environments.is_empty() {
                outln!(
                    "{}: a failed deployment is not rolled back automatically",
                    project.name
                )?;
            } else {
                outln!(
                    "{}: a failed deployment to {} is rolled back once, automatically",
                    project.name,
                    shown.environments.join(", ")
                )?;
            }
        }
        ProjectsCommand::Delete { project } => {
            let project = client.find_project(&project).await?;
            client.delete_project(project.id).await?;
            outln!("deleted project {} ({})", project.id, project.name)?;
        }
        ProjectsCommand::Process { project } => {
            let project = client.find_project(&project).await?;
            let process = client.get_process(project.id).await?;
            for warning in &process.warnings {
                eprintln!("warning: {}: {}", warning.field, warning.detail);
            }
            outln!("{}", serde_json::to_string_pretty(&process)?)?;
        }
        ProjectsCommand::ProcessPut { project, file } => {
            let project = client.find_project(&project).await?;
            let request: ProcessRequest = read_document(&file, &["project_id", "warnings"])?;
            let saved = client.put_process(project.id, &request).await?;
            for warning in &saved.warnings {
                eprintln!("warning: {}: {}", warning.field, warning.detail);
            }
            outln!(
                "saved the process of {}: version {}, {} steps",
                project.name,
                saved.version,
                saved.steps.len()
            )?;
        }
        ProjectsCommand::Variables { project } => {
            let project = client.find_project(&project).await?;
            let variables = client.get_variables(project.id).await?;
            outln!("{}", serde_json::to_string_pretty(&variables)?)?;
        }
        ProjectsCommand::VariablesPut { project, file } => {
            let project = client.find_project(&project).await?;
            let request: VariablesRequest = read_document(&file, &["project_id"])?;
            let saved = client.put_variables(project.id, &request).await?;
            outln!(
                "saved the variables of {}: version {}, {} variables",
                project.name,
                saved.version,
                saved.variables.len()
            )?;
        }
    }
    Ok(())
}

/// Reads a document as the matching `GET` printed it, without the members a `PUT`
/// does not take.
fn read_document<T: serde::de::DeserializeOwned>(
    file: &PathBuf,
    drop: &[&str],
) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if let Some(object) = value.as_object_mut() {
        for key in drop {
            object.remove(*key);
        }
        // Variables as printed carry `sensitive` values as null: leaving them out
        // keeps them.
        if let Some(serde_json::Value::Array(variables)) = object.get_mut("variables") {
            for variable in variables.iter_mut().filter_map(|v| v.as_object_mut()) {
                if variable
                    .get("value")
                    .is_some_and(serde_json::Value::is_null)
                {
                    variable.remove("value");
                }
            }
        }
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid document", file.display()))
}

pub async fn releases(args: ReleasesArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        ReleasesCommand::Create {
            project,
            version,
            notes,
            packages,
        } => {
            let project = client.find_project(&project).await?;
            let packages = packages
                .iter()
                .map(|p| {
                    let (package_id, version) = p
                        .split_once('=')
                        .with_context(|| format!("`--package {p}` must be PACKAGE=VERSION"))?;
                    Ok(PackageSelection {
                        package_id: package_id.to_owned(),
                        version: version.to_owned(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let release = client
                .create_release(&CreateReleaseRequest {
                    project_id: project.id,
                    version,
                    notes,
                    packages,
                })
                .await?;
            outln!(
                "created release {} of {} (id {}): {} steps, {} variables",
                release.summary.version,
                project.name,
                release.summary.id,
                release.steps.len(),
                release.variables.len()
            )?;
            for package in &release.packages {
                outln!(
                    "  {} / {}: {} {}",
                    package.step,
                    package.action,
                    package.package_id,
                    package.version
                )?;
            }
        }
        ReleasesCommand::List { project } => {
            let project = client.find_project(&project).await?;
            let mut query = ReleaseQuery {
                project_id: Some(project.id),
                limit: Some(500),
                ..Default::default()
            };
            outln!("{:>6}  {:<20}  {:<27}  NOTES", "ID", "VERSION", "CREATED")?;
            loop {
                let page = client.list_releases(&query).await?;
                for r in &page.items {
                    outln!(
                        "{:>6}  {:<20}  {:<27}  {}",
                        r.id,
                        r.version,
                        timestamp::format(r.created_at),
                        r.notes.lines().next().unwrap_or_default()
                    )?;
                }
                match page.next {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
        }
        ReleasesCommand::Show { id } => {
            let release = client.get_release(id).await?;
            outln!("{}", serde_json::to_string_pretty(&release)?)?;
        }
    }
    Ok(())
}

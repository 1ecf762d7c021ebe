//! Creating a release: the process, the variables and the package versions frozen in
//! one transaction, so a release never mixes an old process with new variables.

use std::collections::{BTreeMap, BTreeSet};

use capstan_api::{CreateReleaseRequest, ReleasePackage};
use capstan_core::package::PackageVersion;
use capstan_core::process::{Action, Step, VersionRule};
use capstan_db::projects::{self, VariableRow};
use capstan_db::releases::{self, NewRelease, ReleaseRow};
use capstan_db::{DbError, packages};
use sqlx::PgConnection;

use crate::audit::Change;
use crate::invalid::FieldProblems;
use crate::node::NodeContext;
use crate::secrets::SecretError;
use capstan_db::audit::Actor;

/// Why a release was not created.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Every problem found in the request and the project's process and packages.
    #[error("{} problem(s) with the release", .0.listed().0.len() + .0.listed().1)]
    Invalid(FieldProblems),
    /// The version is taken, or the project changed underneath.
    #[error("{0}")]
    Conflict(String),
    /// The project's stored process does not read as steps: the node's data is at
    /// fault, not the request.
    #[error("stored process of project {project}: {source}")]
    StoredProcess {
        project: i64,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FieldProblems> for ReleaseError {
    fn from(problems: FieldProblems) -> Self {
        Self::Invalid(problems)
    }
}

pub async fn create(
    ctx: &NodeContext,
    actor: &Actor,
    request: &CreateReleaseRequest,
) -> Result<(ReleaseRow, Vec<VariableRow>), ReleaseError> {
    let mut problems = FieldProblems::new();
    if request.notes.len() > 64 * 1024 {
        problems.add("notes", "at most 64 KiB");
    }
    let wanted_version = match &request.version {
        Some(text) => problems.check("version", PackageVersion::parse(text)),
        None => None,
    };
    let project = request.project_id;
    let mut tx = ctx.pools.api.begin().await.map_err(db_error)?;
    // Holding the variables' lock keeps a concurrent save out of the snapshot.
    let variables_version = match projects::lock_variables(&mut tx, project).await {
        Ok(version) => version,
        // Without the project nothing else can be checked: say so with what was found.
        Err(DbError::NotFound) => {
            problems.add("project_id", format!("there is no project {project}"));
            return Err(ReleaseError::Invalid(problems));
        }
        Err(other) => return Err(db_error(other)),
    };
    let (process_version, process) = projects::process(&mut *tx, project)
        .await
        .map_err(db_error)?;
    let steps: Vec<Step> = serde_json::from_value(process.clone())
        .map_err(|source| ReleaseError::StoredProcess { project, source })?;
    if steps.is_empty() {
        problems.add(
            "project_id",
            format!(
                "project {project} has no steps: save its process first (PUT /api/projects/{project}/process)"
            ),
        );
    }
    let chosen = resolve_packages(&mut tx, &steps, request, &mut problems).await?;
    problems.finish()?;
    let version = match wanted_version {
        Some(version) => version,
        None => next_version(
            releases::newest_version(&mut *tx, project)
                .await
                .map_err(db_error)?,
        ),
    };
    let variables = snapshot_variables(ctx, &mut tx, project).await?;
    let packages_json = serde_json::to_value(&chosen).unwrap_or_default();
    let row = releases::insert(
        &mut tx,
        &NewRelease {
            project_id: project,
            version: version.as_str(),
            version_key: &version.sort_key(),
            notes: &request.notes,
            process: &process,
            process_version,
            variables_version,
            packages: &packages_json,
        },
        &variables,
    )
    .await
    .map_err(|e| match e {
        DbError::Conflict { .. } => ReleaseError::Conflict(format!(
            "project {project} already has release {version}; pick another version"
        )),
        other => db_error(other),
    })?;
    Change::new("release.create")
        .object(row.id, &row.version)
        .project(project)
        .after(&audited(&row, &variables))
        .record(&mut *tx, actor)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok((row, variables))
}

/// A release as the audit log shows it: its variables as the API shows them, so a
/// sensitive value is never there.
pub fn audited(row: &ReleaseRow, variables: &[VariableRow]) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "project_id": row.project_id,
        "version": row.version,
        "notes": row.notes,
        "process_version": row.process_version,
        "steps": row.process,
        "packages": row.packages,
        "variables_version": row.variables_version,
        "variables": super::variables::responses(variables.to_vec()),
    })
}

fn db_error(e: impl Into<DbError>) -> ReleaseError {
    ReleaseError::Db(e.into())
}

/// The newest release's version with its last number raised (`1.4.2` → `1.4.3`),
/// without pre-release or build; `0.0.1` for a project's first release.
fn next_version(newest: Option<String>) -> PackageVersion {
    let next = newest.and_then(|text| {
        let core = text.split(['-', '+']).next()?;
        let (head, last) = match core.rsplit_once('.') {
            Some((head, last)) => (Some(head), last),
            None => (None, core),
        };
        let last: u64 = last.parse().ok()?;
        let bumped = match head {
            Some(head) => format!("{head}.{}", last.checked_add(1)?),
            None => (last.checked_add(1)?).to_string(),
        };
        PackageVersion::parse(&bumped).ok()
    });
    next.unwrap_or_else(|| PackageVersion::parse("0.0.1").expect("a valid version"))
}

/// The version each package action deploys: a selection in the request, else the
/// action's version, else the newest the rule (or no rule) allows. Every selection or
/// action that cannot be resolved is added to `problems`.
async fn resolve_packages(
    conn: &mut PgConnection,
    steps: &[Step],
    request: &CreateReleaseRequest,
    problems: &mut FieldProblems,
) -> Result<Vec<ReleasePackage>, ReleaseError> {
    let ids: BTreeSet<String> = steps
        .iter()
        .flat_map(|step| &step.actions)
        .filter_map(|action| match action {
            Action::Package { package_id, .. } => Some(package_id.clone()),
            Action::Script { .. } | Action::ManualIntervention { .. } => None,
        })
        .collect();
    let mut selected = BTreeMap::new();
    for (i, selection) in request.packages.iter().enumerate() {
        if !ids.contains(&selection.package_id) {
            problems.add(
                format!("packages[{i}]"),
                format!("the process deploys no package `{}`", selection.package_id),
            );
            continue;
        }
        let field = format!("packages[{i}].version");
        if let Some(version) = problems.check(&field, PackageVersion::parse(&selection.version)) {
            selected.insert(selection.package_id.clone(), version);
        }
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let mut feed: BTreeMap<String, Vec<PackageVersion>> = BTreeMap::new();
    for (id, version) in packages::versions_of(&mut *conn, &ids)
        .await
        .map_err(db_error)?
    {
        if let Ok(version) = PackageVersion::parse(&version) {
            feed.entry(id).or_default().push(version);
        }
    }
    let mut chosen = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        for (a, action) in step.actions.iter().enumerate() {
            let Action::Package {
                package_id,
                version,
                version_rule,
                ..
            } = action
            else {
                continue;
            };
            let available = feed.get(package_id).map(Vec::as_slice).unwrap_or_default();
            let exact = selected.get(package_id).cloned().or_else(|| {
                version
                    .as_deref()
                    .and_then(|v| PackageVersion::parse(v).ok())
            });
            let found = match (exact, version_rule) {
                (Some(wanted), _) => available
                    .iter()
                    .find(|v| v.cmp_precedence(&wanted).is_eq() && v.as_str() == wanted.as_str())
                    .or_else(|| available.iter().find(|v| v.cmp_precedence(&wanted).is_eq()))
                    .ok_or_else(|| {
                        format!("package `{package_id}` {wanted} is not in the feed; push it first")
                    }),
                (None, Some(rule)) => VersionRule::parse(rule)
                    .map_err(|e| e.to_string())
                    .and_then(|rule| {
                        rule.newest(available).ok_or_else(|| {
                            format!(
                                "no version of package `{package_id}` in the feed matches `{}`",
                                version_rule.as_deref().unwrap_or_default()
                            )
                        })
                    }),
                // The newest release; a pre-release only when there is nothing else.
                (None, None) => available
                    .iter()
                    .filter(|v| !v.is_prerelease())
                    .max()
                    .or_else(|| available.iter().max())
                    .ok_or_else(|| format!("the feed has no version of package `{package_id}`")),
            };
            let found = match found {
                Ok(found) => found,
                Err(detail) => {
                    problems.add(
                        format!("steps[{s}].actions[{a}]"),
                        format!("step \"{}\": {detail}", step.name),
                    );
                    continue;
                }
            };
            chosen.push(ReleasePackage {
                step: step.name.clone(),
                action: action.display_name(a),
                package_id: package_id.clone(),
                version: found.to_string(),
            });
        }
    }
    Ok(chosen)
}

/// The project's variables as release rows; each sensitive value sealed again under a
/// secret of its own, since a ciphertext opens only in the row it was made for.
async fn snapshot_variables(
    ctx: &NodeContext,
    conn: &mut PgConnection,
    project: i64,
) -> Result<Vec<VariableRow>, ReleaseError> {
    let mut rows = projects::variables(&mut *conn, project)
        .await
        .map_err(db_error)?;
    let secret_ids: Vec<_> = rows.iter().filter_map(|row| row.secret_id).collect();
    if secret_ids.is_empty() {
        return Ok(rows);
    }
    let mut opened = ctx.secrets.open_many(conn, &secret_ids).await?;
    for row in &mut rows {
        if let Some(id) = row.secret_id {
            let value = opened.remove(&id).unwrap_or_default();
            row.secret_id = Some(ctx.secrets.seal(conn, &value).await?);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::next_version;

    #[test]
    fn the_next_version_raises_the_last_number() {
        let next = |v: Option<&str>| next_version(v.map(str::to_owned)).to_string();
        assert_eq!(next(None), "0.0.1");
        assert_eq!(next(Some("1.4.2")), "1.4.3");
        assert_eq!(next(Some("1.9")), "1.10");
        assert_eq!(next(Some("7")), "8");
        assert_eq!(next(Some("2.0.0-beta.3+abc")), "2.0.1");
    }
}

//! Saving and reading a project's variables. Sensitive values go through
//! [`Secrets`](crate::secrets::Secrets) in the same transaction as the rows that point
//! at them, so a failed save leaves neither.

use std::collections::{HashMap, HashSet};

use capstan_api::projects::{MAX_VALUE_BYTES, MAX_VARIABLES};
use capstan_api::{VariableInput, VariableResponse, VariableScope, VariablesRequest};
use capstan_core::agent::normalize_tags;
use capstan_core::variables::{Scope, ScopedVariable, validate_name};
use capstan_db::DbError;
use capstan_db::projects::{self, VariableRow};
use uuid::Uuid;

use crate::audit::{CHANGED, Change, UNCHANGED};
use crate::node::NodeContext;
use crate::secrets::SecretError;
use capstan_db::audit::Actor;

/// Why a set of variables was not saved.
#[derive(Debug, thiserror::Error)]
pub enum VariablesError {
    /// The set breaks a rule; the text names the variable and the field.
    #[error("{0}")]
    Invalid(String),
    #[error("there is no project {0}")]
    NoProject(i64),
    /// Someone saved since the version the editor read.
    #[error("{}", super::outdated("variables", *.sent, *.current))]
    Outdated { sent: i64, current: i64 },
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Most values in one scope list.
const MAX_SCOPE_VALUES: usize = 200;

/// Checks and saves the whole set if it is still at the version the editor saw;
/// returns the new version.
pub async fn save(
    ctx: &NodeContext,
    actor: &Actor,
    project: i64,
    request: &VariablesRequest,
) -> Result<i64, VariablesError> {
    let inputs = check(&request.variables)?;
    check_environments(ctx, &inputs).await?;
    let mut tx = ctx.pools.api.begin().await.map_err(db_error)?;
    let current = projects::lock_variables(&mut tx, project)
        .await
        .map_err(|e| match e {
            DbError::NotFound => VariablesError::NoProject(project),
            other => other.into(),
        })?;
    if current != request.version {
        return Err(VariablesError::Outdated {
            sent: request.version,
            current,
        });
    }
    let existing: HashMap<Uuid, VariableRow> = projects::variables(&mut *tx, project)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    let mut rows = Vec::with_capacity(inputs.len());
    // What the audit row says of each sensitive value: whether it was given anew.
    let mut sealed_anew = HashSet::new();
    let mut kept_secrets = HashSet::new();
    for (i, (input, scope)) in request.variables.iter().zip(&inputs).enumerate() {
        let at = |detail: &str| {
            VariablesError::Invalid(format!("variables[{i}] (`{}`): {detail}", input.name))
        };
        let old = match input.id {
            Some(id) => Some(existing.get(&id).ok_or_else(|| {
                at(&format!(
                    "the project has no variable {id}; leave `id` out for a new variable"
                ))
            })?),
            None => None,
        };
        let (value, secret_id) = match (input.sensitive, &input.value, old) {
            (true, Some(value), _) => {
                sealed_anew.insert(i);
                (None, Some(ctx.secrets.seal(&mut tx, value).await?))
            }
            (true, None, Some(old)) => match (old.secret_id, &old.value) {
                (Some(secret), _) => {
                    kept_secrets.insert(secret);
                    (None, Some(secret))
                }
                (None, Some(clear)) => (None, Some(ctx.secrets.seal(&mut tx, clear).await?)),
                (None, None) => return Err(at("it has no value to keep")),
            },
            (false, Some(value), _) => (Some(value.clone()), None),
            (false, None, Some(old)) if old.value.is_some() => (old.value.clone(), None),
            (false, None, Some(_)) => {
                return Err(at(
                    "it was sensitive: give its value to make it non-sensitive, since a \
                     sensitive value is never shown",
                ));
            }
            (_, None, None) => return Err(at("a new variable needs a `value`")),
        };
        rows.push(VariableRow {
            id: input.id.unwrap_or_else(Uuid::now_v7),
            name: input.name.clone(),
            value,
            secret_id,
            scope: serde_json::to_value(scope).unwrap_or_default(),
        });
    }
    let dropped: Vec<Uuid> = existing
        .values()
        .filter_map(|row| row.secret_id)
        .filter(|secret| !kept_secrets.contains(secret))
        .collect();
    let before: Vec<VariableRow> = projects::variables(&mut *tx, project)
        .await
        .map_err(db_error)?;
    let version = projects::replace_variables(&mut tx, project, &rows)
        .await
        .map_err(db_error)?;
    projects::delete_secrets(&mut tx, &dropped)
        .await
        .map_err(db_error)?;
    let name = projects::get(&mut *tx, project)
        .await
        .map_err(db_error)?
        .name;
    Change::new("variables.update")
        .object(project, name)
        .project(project)
        .before(&serde_json::json!({
            "version": current,
            "variables": audited(&before, |_| UNCHANGED),
        }))
        .after(&serde_json::json!({
            "version": version,
            "variables": audited(&rows, |i| if sealed_anew.contains(&i) { CHANGED } else { UNCHANGED }),
        }))
        .record(&mut *tx, actor)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(version)
}

/// Variables as the audit log shows them: a sensitive value only as `marker(index)`,
/// [`CHANGED`] or [`UNCHANGED`], never the value or its ciphertext.
fn audited(rows: &[VariableRow], marker: impl Fn(usize) -> &'static str) -> serde_json::Value {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let value = match (&row.value, row.secret_id) {
                (_, Some(_)) => serde_json::Value::from(marker(i)),
                (Some(clear), None) => serde_json::Value::from(clear.as_str()),
                (None, None) => serde_json::Value::Null,
            };
            serde_json::json!({
                "id": row.id,
                "name": row.name,
                "sensitive": row.secret_id.is_some(),
                "value": value,
                "scope": row.scope,
            })
        })
        .collect()
}

fn db_error(e: impl Into<DbError>) -> VariablesError {
    VariablesError::Db(e.into())
}

/// Checks every input and returns its normalized scope.
fn check(inputs: &[VariableInput]) -> Result<Vec<VariableScope>, VariablesError> {
    if inputs.len() > MAX_VARIABLES {
        return Err(VariablesError::Invalid(format!(
            "a project has at most {MAX_VARIABLES} variables, {} were sent",
            inputs.len()
        )));
    }
    let mut scopes = Vec::with_capacity(inputs.len());
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut ids = HashSet::new();
    for (i, input) in inputs.iter().enumerate() {
        let at = |field: &str, detail: String| {
            VariablesError::Invalid(format!("variables[{i}].{field}: {detail}"))
        };
        validate_name(&input.name).map_err(|e| at("name", e.to_string()))?;
        if input
            .value
            .as_ref()
            .is_some_and(|v| v.len() > MAX_VALUE_BYTES)
        {
            return Err(at(
                "value",
                format!("a value has at most {} KiB", MAX_VALUE_BYTES / 1024),
            ));
        }
        if let Some(id) = input.id
            && !ids.insert(id)
        {
            return Err(at("id", format!("{id} is given twice")));
        }
        let scope = normalize_scope(&input.scope).map_err(|(field, why)| at(field, why))?;
        let key = (
            input.name.to_lowercase(),
            serde_json::to_string(&scope).unwrap_or_default(),
        );
        if let Some(first) = seen.insert(key, i) {
            return Err(at(
                "scope",
                format!(
                    "variables[{first}] has the same name `{}` and the same scope: one of them \
                     would never apply",
                    input.name
                ),
            ));
        }
        scopes.push(scope);
    }
    Ok(scopes)
}

/// Sorted, without duplicates, so equal scopes compare equal; tags checked as agents'.
fn normalize_scope(scope: &VariableScope) -> Result<VariableScope, (&'static str, String)> {
    let list = |field: &'static str, values: &[String]| {
        if values.len() > MAX_SCOPE_VALUES {
            return Err((field, format!("at most {MAX_SCOPE_VALUES} values")));
        }
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err((field, "a value cannot be empty".to_owned()));
        }
        let mut values: Vec<String> = values.to_vec();
        values.sort_by_key(|v| v.to_lowercase());
        values.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        Ok(values)
    };
    Ok(VariableScope {
        environments: list("scope.environments", &scope.environments)?,
        tags: normalize_tags(&scope.tags).map_err(|why| ("scope.tags", why))?,
        machines: list("scope.machines", &scope.machines)?,
        steps: list("scope.steps", &scope.steps)?,
    })
}

/// Scopes may name only environments that exist: a typo would silently never match.
async fn check_environments(
    ctx: &NodeContext,
    scopes: &[VariableScope],
) -> Result<(), VariablesError> {
    let known: HashSet<String> =
        capstan_db::agents::list_environments(&ctx.pools.api, capstan_db::access::Viewer::All)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|e| e.name.to_lowercase())
            .collect();
    for (i, scope) in scopes.iter().enumerate() {
        if let Some(unknown) = scope
            .environments
            .iter()
            .find(|e| !known.contains(&e.to_lowercase()))
        {
            return Err(VariablesError::Invalid(format!(
                "variables[{i}].scope.environments: there is no environment `{unknown}`; \
                 create it first (POST /api/environments)"
            )));
        }
    }
    Ok(())
}

/// Stored rows as the API shows them: sensitive values left out.
pub fn responses(rows: Vec<VariableRow>) -> Vec<VariableResponse> {
    rows.into_iter()
        .map(|row| VariableResponse {
            id: row.id,
            sensitive: row.secret_id.is_some(),
            name: row.name,
            value: row.value,
            scope: scope_of(&row.scope),
        })
        .collect()
}

pub fn scope_of(stored: &serde_json::Value) -> VariableScope {
    serde_json::from_value(stored.clone()).unwrap_or_default()
}

/// Stored rows with their sensitive values opened, for evaluating templates.
pub async fn open(
    ctx: &NodeContext,
    rows: &[VariableRow],
) -> Result<Vec<ScopedVariable>, SecretError> {
    let secret_ids: Vec<Uuid> = rows.iter().filter_map(|row| row.secret_id).collect();
    let mut opened = if secret_ids.is_empty() {
        HashMap::new()
    } else {
        let mut conn = ctx.pools.api.acquire().await?;
        ctx.secrets.open_many(&mut conn, &secret_ids).await?
    };
    Ok(rows
        .iter()
        .map(|row| {
            let scope = scope_of(&row.scope);
            let value = match row.secret_id {
                Some(id) => opened.remove(&id).unwrap_or_default(),
                None => row.value.clone().unwrap_or_default(),
            };
            ScopedVariable {
                name: row.name.clone(),
                value,
                sensitive: row.secret_id.is_some(),
                scope: Scope {
                    environments: scope.environments,
                    tags: scope.tags,
                    machines: scope.machines,
                    steps: scope.steps,
                },
            }
        })
        .collect())
}

//! Evaluating a template as a deployment would, so users can check their scoping
//! before they deploy.
//!
//! A preview never reveals a sensitive value: substitutions are masked in the result,
//! every error message is masked (it can hold evaluated text), and conditions and
//! indexes that read a sensitive value are refused, since the branch taken or the name
//! completed would answer a guess (`#{if Password == "guess"}`).

use std::collections::HashSet;

use capstan_api::{PreviewRequest, PreviewResponse, VariableResponse};
use capstan_core::variables::{Masker, ScopeContext, Template, resolve};
use capstan_db::{DbError, agents, projects};

use super::variables::open;
use crate::node::NodeContext;
use crate::secrets::SecretError;

/// Why a template could not be previewed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The template or the scope asked for cannot be evaluated; the text says why
    /// without revealing a sensitive value.
    #[error("{0}")]
    Invalid(String),
    #[error("there is no project {0}")]
    NoProject(i64),
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Largest template a preview evaluates.
const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

pub async fn preview(
    ctx: &NodeContext,
    project: i64,
    request: &PreviewRequest,
) -> Result<PreviewResponse, PreviewError> {
    if request.template.len() > MAX_TEMPLATE_BYTES {
        return Err(PreviewError::Invalid(format!(
            "template: at most {} KiB",
            MAX_TEMPLATE_BYTES / 1024
        )));
    }
    let template = Template::parse(&request.template)
        .map_err(|e| PreviewError::Invalid(format!("template: {e}")))?;
    let db = &ctx.pools.api;
    let row = projects::get(db, project).await.map_err(|e| match e {
        DbError::NotFound => PreviewError::NoProject(project),
        other => other.into(),
    })?;
    let context = context(ctx, request).await?;
    let rows = projects::variables(db, project).await?;
    let variables = open(ctx, &rows).await?;
    let winners = resolve(&variables, &context);
    let mut values: capstan_core::variables::VariableMap = winners
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    for (name, value) in system_variables(&row.name, &context, request) {
        values.insert(name, value);
    }
    let masker = Masker::new(winners.iter().filter(|v| v.sensitive).map(|v| &v.value));
    let sensitive: HashSet<String> = winners
        .iter()
        .filter(|v| v.sensitive)
        .map(|v| v.name.to_lowercase())
        .collect();
    let is_sensitive = |name: &str| sensitive.contains(&name.to_lowercase());
    let rendered = template
        .render_guarded(&values, &is_sensitive)
        .map_err(|e| PreviewError::Invalid(format!("template: {}", e.masked(&masker))))?;
    let referenced: HashSet<String> = template
        .references()
        .into_iter()
        .map(|name| name.to_lowercase())
        .collect();
    let used = winners
        .iter()
        .filter(|v| referenced.contains(&v.name.to_lowercase()))
        .filter_map(|v| {
            let index = variables
                .iter()
                .position(|candidate| std::ptr::eq(candidate, *v))?;
            let stored = &rows[index];
            Some(VariableResponse {
                id: stored.id,
                name: v.name.clone(),
                value: (!v.sensitive).then(|| v.value.clone()),
                sensitive: v.sensitive,
                scope: super::variables::scope_of(&stored.scope),
            })
        })
        .collect();
    Ok(PreviewResponse {
        result: masker.mask(&rendered).into_owned(),
        used,
    })
}

/// The scope a deployment to this machine would have: the machine's own environment
/// and tags unless the request names others.
async fn context(
    ctx: &NodeContext,
    request: &PreviewRequest,
) -> Result<ScopeContext, PreviewError> {
    let db = &ctx.pools.api;
    let agent = match request.machine.as_deref() {
        Some(name) => agents::find_agent(db, name).await?,
        None => None,
    };
    let environment = match (&request.environment, &agent) {
        (Some(name), _) => Some(
            agents::find_environment(db, name)
                .await?
                .ok_or_else(|| {
                    PreviewError::Invalid(format!("environment: there is no environment `{name}`"))
                })?
                .name,
        ),
        (None, Some(agent)) => Some(agent.environment.clone()),
        (None, None) => None,
    };
    let tags = match (&request.tags, &agent) {
        (Some(tags), _) => tags.clone(),
        (None, Some(agent)) => agent.tags.clone(),
        (None, None) => Vec::new(),
    };
    Ok(ScopeContext {
        environment,
        machine: agent.map(|a| a.name).or_else(|| request.machine.clone()),
        tags,
        step: request.step.clone(),
    })
}

/// What `Capstan.*` holds for this preview.
fn system_variables(
    project: &str,
    context: &ScopeContext,
    request: &PreviewRequest,
) -> Vec<(String, String)> {
    let mut values = vec![("Capstan.Project.Name".to_owned(), project.to_owned())];
    let optional = [
        ("Capstan.Environment.Name", context.environment.clone()),
        ("Capstan.Machine.Name", context.machine.clone()),
        ("Capstan.Step.Name", context.step.clone()),
        ("Capstan.Release.Number", request.release.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            values.push((name.to_owned(), value));
        }
    }
    if context.machine.is_some() {
        values.push(("Capstan.Machine.Tags".to_owned(), context.tags.join(",")));
    }
    values
}

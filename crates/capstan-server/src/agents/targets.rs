//! Which agents a piece of work runs on: enabled agents picked by name, tag and
//! environment. Every name asked for must be among them, so a typo or a disabled agent
//! is refused rather than silently skipped.

use capstan_core::names;
use capstan_db::{DbError, agents};

use crate::node::NodeContext;
use crate::runner::kinds::script::{MAX_TARGETS, ScriptTarget};

/// The selection: an empty list matches any agent on that criterion.
#[derive(Debug, Default, Clone)]
pub struct TargetQuery {
    /// Agent names, matched without regard to case.
    pub agents: Vec<String>,
    /// Tags each agent must all carry, already normalized.
    pub tags: Vec<String>,
    /// The environment's name.
    pub environment: Option<String>,
}

/// Why no set of agents was picked.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("there is no environment `{0}`")]
    NoEnvironment(String),
    /// Names asked for that are not among the enabled matches.
    #[error(
        "these agents do not exist, are disabled or do not match the tags and environment: {}",
        .0.join(", ")
    )]
    Unmatched(Vec<String>),
    #[error("no enabled agent matches the names, tags and environment given")]
    NoMatch,
    #[error("more than {MAX_TARGETS} agents match; narrow the selection")]
    TooMany,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The enabled agents matching `query`, at least one and at most [`MAX_TARGETS`].
pub async fn select(
    ctx: &NodeContext,
    query: &TargetQuery,
) -> Result<Vec<ScriptTarget>, TargetError> {
    let db = &ctx.pools.api;
    // Names that look the same are the same name, as when they were stored.
    let wanted: Vec<String> = query.agents.iter().map(|a| names::nfc(a)).collect();
    let environment_id = match query.environment.as_deref() {
        None => None,
        Some(name) => {
            let name = names::nfc(name);
            match agents::find_environment(db, &name).await? {
                Some(environment) => Some(environment.id),
                None => return Err(TargetError::NoEnvironment(name)),
            }
        }
    };
    // One more than allowed, to tell "too many" from "exactly the most".
    let limit = i64::try_from(MAX_TARGETS).unwrap_or(i64::MAX) + 1;
    let found = agents::targets(db, &wanted, &query.tags, environment_id, limit).await?;
    let unmatched: Vec<String> = wanted
        .into_iter()
        .filter(|name| !found.iter().any(|t| t.name.eq_ignore_ascii_case(name)))
        .collect();
    if !unmatched.is_empty() {
        return Err(TargetError::Unmatched(unmatched));
    }
    if found.is_empty() {
        return Err(TargetError::NoMatch);
    }
    if found.len() > MAX_TARGETS {
        return Err(TargetError::TooMany);
    }
    Ok(found
        .into_iter()
        .map(|t| ScriptTarget {
            id: t.id,
            name: t.name,
            environment: t.environment,
            tags: t.tags,
        })
        .collect())
}

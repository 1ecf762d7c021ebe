//! `GET /api/audit`: the audit log, newest first, in keyset pages. There is no route
//! that changes or deletes a row; only the retention archives and deletes old ones.

use std::sync::Arc;

use axum::{Json, extract::State};
use capstan_api::{AuditPage, AuditQuery, Problem};
use capstan_core::audit::ActorKind;
use capstan_db::audit::{self, Filter};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{ApiError, extract::ApiQuery, paging::Keyset, problems::Problems};
use crate::{audit::event_response, node::NodeContext};

const DEFAULT_PAGE: u32 = 100;
/// The longest text a filter takes: names and ids are far shorter.
const MAX_FILTER: usize = 200;

/// `GET /api/audit`.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery), responses(
    (status = 200, body = AuditPage),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_audit(
    State(ctx): State<Arc<NodeContext>>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let filter = filter(&query)?;
    let rows = audit::list(&ctx.pools.api, &filter, keyset.cursor, keyset.fetch())
        .await
        .map_err(|e| ApiError::from_db(e, String::new))?;
    let (rows, next) = keyset.page(rows, |row| row.id);
    let items = rows.into_iter().map(event_response).collect();
    Ok(Json(AuditPage { items, next }))
}

fn filter(query: &AuditQuery) -> Result<Filter, ApiError> {
    let mut problems = Problems::new();
    let actor_kind = query.actor_kind.as_deref().and_then(|kind| {
        problems.check(
            "actor_kind",
            kind.parse::<ActorKind>().map_err(|e| e.to_string()),
        )
    });
    for (field, value) in [
        ("actor", &query.actor),
        ("object_kind", &query.object_kind),
        ("object_id", &query.object_id),
        ("action", &query.action),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_FILTER) {
            problems.add(field, format!("at most {MAX_FILTER} bytes"));
        }
    }
    let mut time = |field: &'static str, value: &Option<String>| {
        value.as_deref().and_then(|value| {
            problems.check(
                field,
                OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
                    format!("`{value}` is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
                }),
            )
        })
    };
    let since = time("since", &query.since);
    let until = time("until", &query.until);
    problems.finish()?;
    Ok(Filter {
        actor_kind,
        actor_id: query.actor_id,
        actor_name: query.actor.clone(),
        object_kind: query.object_kind.clone(),
        object_id: query.object_id.clone(),
        project_id: query.project_id,
        environment_id: query.environment_id,
        action: query.action.clone(),
        since,
        until,
    })
}

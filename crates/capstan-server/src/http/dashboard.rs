//! `GET /api/dashboard`: which release is where.

use std::sync::Arc;

use axum::{Extension, Json, extract::State};
use capstan_api::dashboard::{
    Dashboard, DashboardCell, DashboardEnvironment, DashboardProject, DashboardQuery,
};
use capstan_db::dashboard::{self as db, CellRow, DashboardFilter};

use super::{ApiError, access::Caller, extract::ApiQuery, paging::Keyset};
use crate::node::NodeContext;

const DEFAULT_PAGE: u32 = 100;
/// Most cells a machine view shows: a machine rarely runs more project ×
/// environment pairs than this.
const MACHINE_CELLS: i64 = 5000;

/// `GET /api/dashboard`: a page of projects (by name) × the environments, each cell
/// the newest deployment of the pair; with `machine`, what that machine runs.
#[utoipa::path(get, path = "/api/dashboard", tag = "deployments", params(DashboardQuery),
    responses((status = 200, body = Dashboard)))]
pub(crate) async fn get_dashboard(
    State(ctx): State<Arc<NodeContext>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<DashboardQuery>,
) -> Result<Json<Dashboard>, ApiError> {
    let keyset = Keyset::parse(query.limit, query.cursor.as_deref(), DEFAULT_PAGE)?;
    let failed = |e| ApiError::from_db(e, String::new);
    let db = &ctx.pools.api;
    let filter = DashboardFilter {
        viewer: caller.viewer(),
        project_id: query.project_id,
        environment_id: query.environment_id,
        after: keyset.cursor,
        limit: keyset.fetch(),
    };
    let environments = db::environments(db, &filter).await.map_err(failed)?;
    if let Some(machine) = query.machine {
        let cells: Vec<CellRow> = db::machine(db, filter.viewer, machine, MACHINE_CELLS)
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|c| {
                query.project_id.is_none_or(|p| p == c.project_id)
                    && query.environment_id.is_none_or(|e| e == c.environment_id)
            })
            .collect();
        let ids: Vec<i64> = cells.iter().map(|c| c.project_id).collect();
        let projects = db::projects(
            db,
            &DashboardFilter {
                after: None,
                limit: MACHINE_CELLS,
                ..filter
            },
        )
        .await
        .map_err(failed)?
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .map(project)
        .collect();
        return Ok(Json(Dashboard {
            projects,
            environments: environments.into_iter().map(environment).collect(),
            cells: cells.into_iter().map(cell).collect(),
            next: None,
        }));
    }
    let projects = db::projects(db, &filter).await.map_err(failed)?;
    let (projects, next) = keyset.page(projects, |p| p.id);
    let project_ids: Vec<i64> = projects.iter().map(|p| p.id).collect();
    let environment_ids: Vec<i64> = environments.iter().map(|e| e.id).collect();
    let cells = db::cells(db, filter.viewer, &project_ids, &environment_ids)
        .await
        .map_err(failed)?;
    Ok(Json(Dashboard {
        projects: projects.into_iter().map(project).collect(),
        environments: environments.into_iter().map(environment).collect(),
        cells: cells.into_iter().map(cell).collect(),
        next,
    }))
}

fn project(row: db::ProjectRow) -> DashboardProject {
    DashboardProject {
        id: row.id,
        name: row.name,
        latest_release_id: row.latest_release_id,
        latest_release: row.latest_release,
    }
}

fn environment(row: db::EnvironmentRow) -> DashboardEnvironment {
    DashboardEnvironment {
        id: row.id,
        name: row.name,
    }
}

fn cell(row: CellRow) -> DashboardCell {
    DashboardCell {
        project_id: row.project_id,
        environment_id: row.environment_id,
        deployment_id: row.deployment_id,
        release_id: row.release_id,
        release: row.release,
        state: row.state,
        queued_at: row.queued_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        queued_by: row.queued_by,
        newer_release: row.newer_release,
    }
}

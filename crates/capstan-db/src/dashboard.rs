//! The dashboard: a page of projects × the environments, each cell the newest
//! deployment of that pair, read in one statement (a LATERAL index walk per cell, no
//! per-row subquery run by the client).
//!
//! "A newer release waits" means a release of the project sorts after the cell's by
//! version and may be deployed to the cell's environment now: under the project's
//! lifecycle it has completed the phases before the environment's (see
//! `capstan_core::lifecycle::may_deploy`, which [`NEWER_RELEASE`] mirrors in SQL, one
//! more LATERAL walk per cell).

use capstan_core::deployment::DeploymentState;
use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::{DbError, StateColumn, access::Viewer};

/// A project on the page, with its newest release by version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub latest_release_id: Option<i64>,
    pub latest_release: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentRow {
    pub id: i64,
    pub name: String,
}

/// The newest deployment of one project × environment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CellRow {
    pub project_id: i64,
    pub environment_id: i64,
    pub deployment_id: i64,
    pub release_id: i64,
    pub release: String,
    #[sqlx(try_from = "StateColumn<DeploymentState>")]
    pub state: DeploymentState,
    pub queued_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// Who queued it, as the deployment's audit row names them (gone once audit
    /// retention has swept that row).
    pub queued_by: Option<String>,
    pub newer_release: bool,
}

/// What a page asks for. `after` is the id of the last project of the previous page;
/// projects come by name, then id.
#[derive(Debug, Clone, Default)]
pub struct DashboardFilter {
    pub viewer: Viewer,
    pub project_id: Option<i64>,
    pub environment_id: Option<i64>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// The projects of the page, by name.
pub async fn projects(
    db: impl PgExecutor<'_>,
    filter: &DashboardFilter,
) -> Result<Vec<ProjectRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT p.id, p.name, r.id AS latest_release_id, r.version AS latest_release
         FROM projects p
         LEFT JOIN LATERAL (SELECT id, version FROM releases
                            WHERE project_id = p.id ORDER BY version_key DESC LIMIT 1) r ON true
         WHERE ($1::bigint IS NULL OR p.id = $1)
           AND ($2::bigint IS NULL
                OR (p.name, p.id) > (SELECT name, id FROM projects WHERE id = $2))
           AND {}
         ORDER BY p.name, p.id LIMIT $3",
        crate::access::visible(4, Some("p.id"), None)
    ))
    .bind(filter.project_id)
    .bind(filter.after)
    .bind(filter.limit)
    .bind(filter.viewer.user_id())
    .fetch_all(db)
    .await?)
}

/// The environments, as columns, by name.
pub async fn environments(
    db: impl PgExecutor<'_>,
    filter: &DashboardFilter,
) -> Result<Vec<EnvironmentRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT e.id, e.name FROM environments e
         WHERE ($1::bigint IS NULL OR e.id = $1) AND {}
         ORDER BY lower(e.name), e.id LIMIT 1000",
        crate::access::visible(2, None, Some("e.id"))
    ))
    .bind(filter.environment_id)
    .bind(filter.viewer.user_id())
    .fetch_all(db)
    .await?)
}

/// The state as readers see it: the engine's, unless its task ended without the
/// engine saying how (the same rule as the deployments list).
const STATE: &str = "CASE WHEN d.state IN ('queued', 'running', 'awaiting_intervention')
                  AND t.state IS DISTINCT FROM 'queued' AND t.state IS DISTINCT FROM 'running'
             THEN CASE t.state WHEN 'cancelled' THEN 'cancelled' ELSE 'aborted' END
             ELSE d.state END";

/// Joined as `newer`: `waits` is set when a release of project `{project}` newer than
/// the cell's release `r` may be deployed to environment `{environment}`. Either the
/// project has no lifecycle, or the environment is in one of its phases and the release
/// has, in every earlier phase that is not optional, as many successful environments
/// as the phase's rule needs. The project's newest release comes from
/// `releases_newest` first: a cell that shows it looks no further (a one-time filter).
/// Otherwise the newer candidates come newest first from the same index, and the first
/// that may go answers; the successes are counted through `deployments_release_state`.
const NEWER_RELEASE: &str = "LEFT JOIN LATERAL (SELECT version_key FROM releases
                   WHERE project_id = {project} ORDER BY version_key DESC LIMIT 1) latest ON true
    LEFT JOIN LATERAL (
        -- Most cells show their project's newest release: nothing more to look at.
        SELECT true AS waits FROM releases nr
        JOIN projects np ON np.id = nr.project_id
        LEFT JOIN lifecycle_phase_environments ep
               ON ep.lifecycle_id = np.lifecycle_id AND ep.environment_id = {environment}
        WHERE latest.version_key > r.version_key
          AND nr.project_id = {project} AND nr.version_key > r.version_key
          AND (np.lifecycle_id IS NULL OR (ep.position IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM lifecycle_phases lp
                JOIN LATERAL (SELECT count(DISTINCT c.environment_id) AS n,
                                     count(DISTINCT s.environment_id) AS done
                              FROM lifecycle_phase_environments c
                              LEFT JOIN deployments s
                                     ON s.release_id = nr.id AND s.state = 'succeeded'
                                    AND s.environment_id = c.environment_id
                              WHERE c.lifecycle_id = lp.lifecycle_id
                                AND c.position = lp.position) pe ON true
                WHERE lp.lifecycle_id = np.lifecycle_id AND lp.position < ep.position
                  AND lp.rule <> 'optional'
                  AND pe.done < CASE WHEN lp.rule = 'at_least' THEN least(lp.min_count, pe.n)
                                     ELSE pe.n END)))
        ORDER BY nr.version_key DESC LIMIT 1) newer ON true";

fn newer_release(project: &str, environment: &str) -> String {
    NEWER_RELEASE
        .replace("{project}", project)
        .replace("{environment}", environment)
}

/// The cells of `projects` × `environments` that have a deployment the viewer may see.
pub async fn cells(
    db: impl PgExecutor<'_>,
    viewer: Viewer,
    projects: &[i64],
    environments: &[i64],
) -> Result<Vec<CellRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT d.project_id, d.environment_id, d.id AS deployment_id, d.release_id,
                r.version AS release, {STATE} AS state, d.queued_at,
                coalesce(d.started_at, t.started_at) AS started_at,
                coalesce(d.finished_at, CASE WHEN d.state IN ('queued', 'running',
                         'awaiting_intervention') THEN t.finished_at END) AS finished_at,
                a.actor_name AS queued_by,
                coalesce(newer.waits, false) AS newer_release
         FROM unnest($1::bigint[]) AS pid (id)
         CROSS JOIN unnest($2::bigint[]) AS eid (id)
         JOIN LATERAL (SELECT * FROM deployments
                       WHERE project_id = pid.id AND environment_id = eid.id
                       ORDER BY id DESC LIMIT 1) d ON true
         JOIN releases r ON r.id = d.release_id
         LEFT JOIN tasks t ON t.id = d.task_id
         {}
         LEFT JOIN LATERAL (SELECT actor_name FROM audit_events
                            WHERE object_kind = 'deployment' AND object_id = d.id::text
                              AND action = 'deployment.create'
                            ORDER BY id LIMIT 1) a ON true
         WHERE {}",
        newer_release("pid.id", "eid.id"),
        crate::access::visible(3, Some("pid.id"), Some("eid.id"))
    ))
    .bind(projects)
    .bind(environments)
    .bind(viewer.user_id())
    .fetch_all(db)
    .await?)
}

/// What machine `agent_id` runs: per project × environment, the newest deployment
/// whose cells on that machine succeeded.
pub async fn machine(
    db: impl PgExecutor<'_>,
    viewer: Viewer,
    agent_id: i64,
    limit: i64,
) -> Result<Vec<CellRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT DISTINCT ON (d.project_id, d.environment_id)
                d.project_id, d.environment_id, d.id AS deployment_id, d.release_id,
                r.version AS release, {STATE} AS state, d.queued_at,
                coalesce(d.started_at, t.started_at) AS started_at,
                d.finished_at, a.actor_name AS queued_by,
                coalesce(newer.waits, false) AS newer_release
         FROM (SELECT DISTINCT deployment_id FROM deployment_cells
               WHERE agent_id = $1 AND state = 'succeeded') c
         JOIN deployments d ON d.id = c.deployment_id
         JOIN releases r ON r.id = d.release_id
         LEFT JOIN tasks t ON t.id = d.task_id
         {}
         LEFT JOIN LATERAL (SELECT actor_name FROM audit_events
                            WHERE object_kind = 'deployment' AND object_id = d.id::text
                              AND action = 'deployment.create'
                            ORDER BY id LIMIT 1) a ON true
         WHERE NOT EXISTS (SELECT 1 FROM deployment_cells f
                           WHERE f.deployment_id = d.id AND f.agent_id = $1
                             AND f.state IN ('failed', 'cancelled', 'unknown'))
           AND {}
         ORDER BY d.project_id, d.environment_id, d.id DESC
         LIMIT $2",
        newer_release("d.project_id", "d.environment_id"),
        crate::access::visible(3, Some("d.project_id"), Some("d.environment_id"))
    ))
    .bind(agent_id)
    .bind(limit)
    .bind(viewer.user_id())
    .fetch_all(db)
    .await?)
}

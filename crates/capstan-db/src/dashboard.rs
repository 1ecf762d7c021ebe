//! The dashboard: a page of projects × the environments, each cell the newest
//! deployment of that pair, read in one statement (a LATERAL index walk per cell, no
//! per-row subquery run by the client).
//!
//! "A newer release waits" means a release of the project sorts after the cell's by
//! version and may be deployed to the cell's environment now: under the project's
//! lifecycle it has completed the phases before the environment's (see
//! `capstan_core::lifecycle::may_deploy`, which [`PROMOTABLE`] mirrors in SQL).

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

/// What a page's cells (`shown`: project_id, environment_id, version_key of the
/// release shown) need to tell whether a newer release waits: per project of the page,
/// its row (`rows`: the oldest release it shows, its lifecycle and newest release); each
/// release newer than the oldest shown, once, with the first phase of the lifecycle it
/// has not completed (`gates`: a phase that is not optional with fewer successful
/// environments than its rule needs); and per project and phase, the newest of those
/// releases that may go to the phase's environments (`best`). All set-based: the
/// successes of a release are read once, through `deployments_release_state`, however
/// many cells it could go to. A project's row that shows its newest release everywhere
/// has no candidate at all.
const PROMOTABLE: &str = "rows AS (
        SELECT o.project_id, o.oldest, p.lifecycle_id, latest.version_key AS newest
        FROM (SELECT project_id, min(version_key) AS oldest FROM shown GROUP BY project_id) o
        JOIN projects p ON p.id = o.project_id
        LEFT JOIN LATERAL (SELECT version_key FROM releases WHERE project_id = o.project_id
                           ORDER BY version_key DESC LIMIT 1) latest ON true
    ), gates AS MATERIALIZED (
        SELECT w.project_id, w.lifecycle_id, nr.version_key, g.blocked_at
        FROM rows w
        JOIN releases nr ON nr.project_id = w.project_id AND nr.version_key > w.oldest
        CROSS JOIN LATERAL (SELECT coalesce(array_agg(s.environment_id), '{}') AS ids
                            FROM deployments s
                            WHERE s.release_id = nr.id AND s.state = 'succeeded') ok
        LEFT JOIN LATERAL (
            SELECT min(lp.position) AS blocked_at FROM lifecycle_phases lp
            CROSS JOIN LATERAL (
                SELECT count(*) AS n,
                       count(*) FILTER (WHERE c.environment_id = ANY(ok.ids)) AS done
                FROM lifecycle_phase_environments c
                WHERE c.lifecycle_id = lp.lifecycle_id AND c.position = lp.position) pe
            WHERE lp.lifecycle_id = w.lifecycle_id AND lp.rule <> 'optional'
              AND pe.done < CASE WHEN lp.rule = 'at_least' THEN least(lp.min_count, pe.n)
                                 ELSE pe.n END) g ON true
        WHERE w.lifecycle_id IS NOT NULL AND w.newest > w.oldest
    ), best AS (
        SELECT g.project_id, lp.position, max(g.version_key) AS version_key
        FROM gates g
        JOIN lifecycle_phases lp ON lp.lifecycle_id = g.lifecycle_id
                                AND lp.position <= coalesce(g.blocked_at, lp.position)
        GROUP BY g.project_id, lp.position
    )";

/// The cells of `shown` with who queued each and whether a newer release waits: the
/// project's newest release sorts after the cell's and, under a lifecycle, a release
/// newer than the cell's may go to the phase of the cell's environment (none may go to
/// an environment outside the lifecycle).
const SHOWN_CELLS: &str = "SELECT s.project_id, s.environment_id, s.deployment_id, s.release_id,
            s.release, s.state, s.queued_at, s.started_at, s.finished_at,
            a.actor_name AS queued_by,
            CASE WHEN w.newest IS NULL OR w.newest <= s.version_key THEN false
                 WHEN w.lifecycle_id IS NULL THEN true
                 ELSE coalesce(b.version_key > s.version_key, false) END AS newer_release
     FROM shown s
     JOIN rows w ON w.project_id = s.project_id
     LEFT JOIN lifecycle_phase_environments ep
            ON ep.lifecycle_id = w.lifecycle_id AND ep.environment_id = s.environment_id
     LEFT JOIN best b ON b.project_id = s.project_id AND b.position = ep.position
     LEFT JOIN LATERAL (SELECT actor_name FROM audit_events
                        WHERE object_kind = 'deployment' AND object_id = s.deployment_id::text
                          AND action = 'deployment.create'
                        ORDER BY id LIMIT 1) a ON true";

/// The cells of `projects` × `environments` that have a deployment the viewer may see.
pub async fn cells(
    db: impl PgExecutor<'_>,
    viewer: Viewer,
    projects: &[i64],
    environments: &[i64],
) -> Result<Vec<CellRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "WITH shown AS MATERIALIZED (
             SELECT d.project_id, d.environment_id, d.id AS deployment_id, d.release_id,
                    r.version AS release, r.version_key, {STATE} AS state, d.queued_at,
                    coalesce(d.started_at, t.started_at) AS started_at,
                    coalesce(d.finished_at, CASE WHEN d.state IN ('queued', 'running',
                             'awaiting_intervention') THEN t.finished_at END) AS finished_at
             FROM unnest($1::bigint[]) AS pid (id)
             CROSS JOIN unnest($2::bigint[]) AS eid (id)
             JOIN LATERAL (SELECT * FROM deployments
                           WHERE project_id = pid.id AND environment_id = eid.id
                           ORDER BY id DESC LIMIT 1) d ON true
             JOIN releases r ON r.id = d.release_id
             LEFT JOIN tasks t ON t.id = d.task_id
             WHERE {}
         ), {PROMOTABLE}
         {SHOWN_CELLS}",
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
        "WITH shown AS MATERIALIZED (
             SELECT DISTINCT ON (d.project_id, d.environment_id)
                    d.project_id, d.environment_id, d.id AS deployment_id, d.release_id,
                    r.version AS release, r.version_key, {STATE} AS state, d.queued_at,
                    coalesce(d.started_at, t.started_at) AS started_at, d.finished_at
             FROM (SELECT DISTINCT deployment_id FROM deployment_cells
                   WHERE agent_id = $1 AND state = 'succeeded') c
             JOIN deployments d ON d.id = c.deployment_id
             JOIN releases r ON r.id = d.release_id
             LEFT JOIN tasks t ON t.id = d.task_id
             WHERE NOT EXISTS (SELECT 1 FROM deployment_cells f
                               WHERE f.deployment_id = d.id AND f.agent_id = $1
                                 AND f.state IN ('failed', 'cancelled', 'unknown'))
               AND {}
             ORDER BY d.project_id, d.environment_id, d.id DESC
             LIMIT $2
         ), {PROMOTABLE}
         {SHOWN_CELLS}
         ORDER BY s.project_id, s.environment_id",
        crate::access::visible(3, Some("d.project_id"), Some("d.environment_id"))
    ))
    .bind(agent_id)
    .bind(limit)
    .bind(viewer.user_id())
    .fetch_all(db)
    .await?)
}

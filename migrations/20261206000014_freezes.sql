-- Freeze windows: spans of time when deployments to some projects and environments do
-- not start. Fixed (a start and an end) or recurring (a cron expression read on the
-- wall clock of an IANA zone, each firing opening the window for `duration`).

CREATE TABLE freeze_windows (
    id               bigserial   PRIMARY KEY,
    name             text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    starts_at        timestamptz,
    ends_at          timestamptz,
    cron             text,
    -- As the operator wrote it (`62h`), read back the same way.
    duration         text,
    time_zone        text,
    -- The scope: every project (environment), or only those listed below. Kept apart
    -- from the lists so that deleting the last project listed narrows the window to
    -- nothing and never widens it to everything.
    all_projects     boolean     NOT NULL,
    all_environments boolean     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT freeze_windows_kind_check CHECK (
        (starts_at IS NOT NULL AND ends_at IS NOT NULL AND ends_at > starts_at
         AND cron IS NULL AND duration IS NULL AND time_zone IS NULL)
        OR (starts_at IS NULL AND ends_at IS NULL
         AND cron IS NOT NULL AND duration IS NOT NULL AND time_zone IS NOT NULL)
    )
);

CREATE UNIQUE INDEX freeze_windows_name ON freeze_windows (lower(name));

CREATE TABLE freeze_window_projects (
    window_id  bigint NOT NULL REFERENCES freeze_windows (id) ON DELETE CASCADE,
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (window_id, project_id)
);
CREATE INDEX freeze_window_projects_project ON freeze_window_projects (project_id);

CREATE TABLE freeze_window_environments (
    window_id      bigint NOT NULL REFERENCES freeze_windows (id) ON DELETE CASCADE,
    environment_id bigint NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    PRIMARY KEY (window_id, environment_id)
);
CREATE INDEX freeze_window_environments_environment
    ON freeze_window_environments (environment_id);

-- A deployment queued with `override_freeze`: no window holds it, and the windows open
-- when it was queued are named here (as in its audit row).
CREATE TABLE freeze_overrides (
    deployment_id bigint      PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    windows       text[]      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The permission to start a deployment while a window holds it: roles may carry it,
-- and the system administrator (every permission) does.
ALTER TABLE roles DROP CONSTRAINT roles_permissions;
ALTER TABLE roles ADD CONSTRAINT roles_permissions CHECK (permissions <@ ARRAY[
    'view', 'edit_process', 'create_release', 'deploy', 'answer_interventions',
    'manage_projects', 'manage_environments', 'manage_agents', 'manage_nodes',
    'manage_users', 'view_audit', 'override_freeze']::text[]);
UPDATE roles SET permissions = array_append(permissions, 'override_freeze')
WHERE built_in AND name = 'system administrator'
  AND NOT ('override_freeze' = ANY (permissions));

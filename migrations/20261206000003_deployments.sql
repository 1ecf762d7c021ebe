-- Deployments: a release run on an environment's machines by a task of kind `deploy`.
-- Every step × target × action cell is stored as it changes, under the running
-- attempt's fence, so another node can resume a deployment whose node died.

CREATE TABLE deployments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Kept after task history retention deletes the task: the deployment is history.
    task_id        bigint      UNIQUE REFERENCES tasks (id) ON DELETE SET NULL,
    project_id     bigint      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    release_id     bigint      NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    environment_id bigint      NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    -- What was asked: targets, exclude_targets, skip_steps, guided_failure, offline_targets.
    options        jsonb       NOT NULL DEFAULT '{}',
    -- The machines picked when the deployment started: [{agent_id, name, tags}].
    targets        jsonb       NOT NULL DEFAULT '[]',
    state          text        NOT NULL DEFAULT 'queued'
                   CONSTRAINT deployments_state_check
                   CHECK (state IN ('queued', 'running', 'awaiting_intervention', 'succeeded',
                                    'failed', 'cancelled', 'abandoned', 'aborted')),
    error          text,
    -- {who, address, at} of whoever cancelled or abandoned it.
    stopped_by     jsonb,
    queued_at      timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz
);
CREATE INDEX deployments_project ON deployments (project_id, id);
CREATE INDEX deployments_environment ON deployments (environment_id, id);
CREATE INDEX deployments_release ON deployments (release_id, id);

CREATE TABLE deployment_cells (
    deployment_id bigint      NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    step          integer     NOT NULL,
    agent_id      bigint      NOT NULL,
    action        integer     NOT NULL,
    -- The agent's name when the deployment started: agents may be renamed or deleted.
    target        text        NOT NULL,
    state         text        NOT NULL
                  CONSTRAINT deployment_cells_state_check
                  CHECK (state IN ('pending', 'waiting', 'running', 'succeeded', 'failed',
                                   'skipped', 'excluded', 'cancelled', 'unknown')),
    -- What a waiting cell waits for (a BlockedBy as JSON).
    waiting_for   jsonb,
    command_id    bigint,
    started_at    timestamptz,
    finished_at   timestamptz,
    exit_code     integer,
    outputs       jsonb       NOT NULL DEFAULT '{}',
    error         text,
    PRIMARY KEY (deployment_id, step, agent_id, action)
);

CREATE TABLE deployment_interventions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id bigint      NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    kind          text        NOT NULL
                  CONSTRAINT deployment_interventions_kind_check
                  CHECK (kind IN ('guided_failure', 'manual')),
    step          integer     NOT NULL,
    agent_id      bigint,
    target        text,
    action        integer,
    question      text        NOT NULL,
    responsible_role text,
    asked_at      timestamptz NOT NULL DEFAULT now(),
    answer        text
                  CONSTRAINT deployment_interventions_answer_check
                  CHECK (answer IN ('retry', 'ignore', 'exclude', 'fail', 'proceed', 'abort')),
    -- {who, address, at}
    answered_by   jsonb,
    note          text        NOT NULL DEFAULT ''
);
CREATE INDEX deployment_interventions_deployment ON deployment_interventions (deployment_id, id);
-- One open question per cell: a resumed run asks again only what was never asked.
CREATE UNIQUE INDEX deployment_interventions_open ON deployment_interventions
    (deployment_id, step, coalesce(agent_id, 0), coalesce(action, -1)) WHERE answer IS NULL;

-- Machine mutexes and named locks, held by a deployment (not a node), so a resumed run
-- keeps what the dead node's run held. `resource` is `machine:<agent id>`,
-- `lock:<name>:machine:<agent id>` or `lock:<name>:environment:<environment id>`.
CREATE TABLE deployment_locks (
    resource      text        PRIMARY KEY,
    deployment_id bigint      NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    since         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployment_locks_deployment ON deployment_locks (deployment_id);

-- Deployments waiting for a resource: the oldest deployment gets it first.
CREATE TABLE deployment_lock_waiters (
    resource      text        NOT NULL,
    deployment_id bigint      NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    since         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource, deployment_id)
);
CREATE INDEX deployment_lock_waiters_deployment ON deployment_lock_waiters (deployment_id);

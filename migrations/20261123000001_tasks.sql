-- The cluster's task queue: one table, FIFO by id, claimed with FOR UPDATE SKIP LOCKED.
--
-- Every index below is partial on purpose: a state change is never a HOT update, so
-- each index is written on every claim and completion. Only rows that are queued or
-- running (a few thousand at most) sit in the hot indexes; finished history does not.
CREATE TABLE tasks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text        NOT NULL,
    args             jsonb       NOT NULL DEFAULT '{}',
    state            text        NOT NULL DEFAULT 'queued'
                     CONSTRAINT tasks_state_check
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- What rescue does when the node running the task is lost.
    on_node_lost     text        NOT NULL
                     CONSTRAINT tasks_on_node_lost_check CHECK (on_node_lost IN ('fail', 'requeue')),
    -- Tasks sharing a key run one at a time across the cluster, in id order.
    concurrency_key  text,
    -- Periodic tasks carry one key per period, so only one node's insert wins.
    dedupe_key       text,
    -- The fencing token: bumped by every claim; every later write names the one it holds.
    attempt          integer     NOT NULL DEFAULT 0,
    node_id          uuid,
    lease_expires_at timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    error            text
);

CREATE INDEX tasks_queued ON tasks (id) WHERE state = 'queued';
CREATE INDEX tasks_running ON tasks (node_id) WHERE state = 'running';
CREATE INDEX tasks_queued_concurrency_key ON tasks (concurrency_key, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
-- The guarantee behind concurrency keys, whatever the claim query gets wrong.
CREATE UNIQUE INDEX tasks_running_concurrency_key ON tasks (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
CREATE UNIQUE INDEX tasks_dedupe_key ON tasks (dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Attempts that rescue took over (outcome `lost`): who ran them, when, and when the
-- lease ran out. A task's latest attempt lives in `tasks` itself (`attempt`,
-- `node_id`, `started_at`, `finished_at`, `state`), so a task that runs once, as most
-- do, writes no row here.
CREATE TABLE task_attempts (
    task_id     bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    node_id     uuid        NOT NULL,
    -- Kept as text: the node's row may be deleted long before the task's history.
    node_name   text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome     text        NOT NULL,
    PRIMARY KEY (task_id, attempt)
);

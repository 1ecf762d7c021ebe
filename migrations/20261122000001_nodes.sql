-- Server nodes. Each node upserts its own row at start and on every heartbeat; any node
-- may change another's task_cap or draining flag, and the target learns of it through
-- NOTIFY on `capstan_nodes` (payload: the node id) or, at the latest, its next heartbeat.
CREATE TABLE nodes (
    id uuid CONSTRAINT nodes_pkey PRIMARY KEY,
    name text NOT NULL CONSTRAINT nodes_name_key UNIQUE,
    version text NOT NULL,
    url text NOT NULL,
    task_cap integer NOT NULL CONSTRAINT nodes_task_cap_range CHECK (task_cap BETWEEN 0 AND 1000),
    draining boolean NOT NULL DEFAULT false,
    running_tasks integer NOT NULL DEFAULT 0 CONSTRAINT nodes_running_tasks_positive CHECK (running_tasks >= 0),
    -- Each node's own interval, so "online" (seen within three intervals) is judged by
    -- the rhythm that node promised, not by the reader's.
    heartbeat_interval_ms integer NOT NULL CONSTRAINT nodes_heartbeat_interval_positive CHECK (heartbeat_interval_ms > 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    -- Set by a clean shutdown so the node shows offline at once instead of after three
    -- missed heartbeats.
    stopped_at timestamptz
);

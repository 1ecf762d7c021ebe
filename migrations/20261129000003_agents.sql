-- Polling agents, their environments and registration tokens, and each agent's
-- mailbox: the commands any node hands over when the agent polls it.

CREATE TABLE environments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Names are unique whatever their case: "production" and "Production" are one.
CREATE UNIQUE INDEX environments_name ON environments (lower(name));

-- Secrets are kept only as sha256 digests of the token (tokens are 160 random bits,
-- so a fast digest is enough: there is nothing to guess).
CREATE TABLE registration_tokens (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest     bytea       NOT NULL UNIQUE,
    prefix     text        NOT NULL,
    note       text,
    uses_left  integer     NOT NULL CHECK (uses_left >= 0),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text        NOT NULL,
    environment_id    bigint      NOT NULL REFERENCES environments (id),
    tags              text[]      NOT NULL DEFAULT '{}',
    version           text        NOT NULL,
    credential_digest bytea       NOT NULL UNIQUE,
    last_seen         timestamptz,
    last_node         text,
    health            text        NOT NULL DEFAULT 'unknown'
                      CHECK (health IN ('unknown', 'healthy', 'unhealthy')),
    health_reason     text,
    health_checked_at timestamptz,
    disabled          boolean     NOT NULL DEFAULT false,
    registered_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX agents_name ON agents (lower(name));
CREATE INDEX agents_environment ON agents (environment_id);
CREATE INDEX agents_tags ON agents USING gin (tags);

-- An agent's mailbox. pending -> delivered (handed over, not yet acknowledged) ->
-- running (acknowledged: the agent runs it) -> succeeded | failed | timed_out |
-- cancelled. Unacknowledged commands are handed over again on every poll.
CREATE TABLE agent_commands (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id        bigint      NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    task_id         bigint      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- The task attempt that sent it: a later attempt ignores an earlier one's commands.
    task_attempt    integer     NOT NULL,
    body            jsonb       NOT NULL,
    timeout_ms      bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'running', 'succeeded',
                                     'failed', 'timed_out', 'cancelled')),
    deliveries      integer     NOT NULL DEFAULT 0,
    cancel_requested boolean    NOT NULL DEFAULT false,
    cancel_requested_at timestamptz,
    -- The highest output line stored, so a batch sent twice is stored once.
    last_seq        bigint      NOT NULL DEFAULT 0,
    exit_code       integer,
    error           text,
    outputs         jsonb       NOT NULL DEFAULT '{}',
    queued_at       timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
-- What a poll reads: an agent's commands still to hand over or to cancel.
CREATE INDEX agent_commands_open ON agent_commands (agent_id, id)
    WHERE state IN ('pending', 'delivered', 'running');
CREATE INDEX agent_commands_task ON agent_commands (task_id);

-- Output lines on their way from the agent (through whichever node it reached) to
-- the task log, which the node running the task writes. That node takes them out.
CREATE TABLE agent_command_output (
    command_id bigint      NOT NULL REFERENCES agent_commands (id) ON DELETE CASCADE,
    task_id    bigint      NOT NULL,
    seq        bigint      NOT NULL,
    stream     text        NOT NULL,
    text       text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (command_id, seq)
);
CREATE INDEX agent_command_output_task ON agent_command_output (task_id);

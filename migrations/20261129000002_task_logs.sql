-- Task logs. The lines live in the blob store; these tables say which objects hold a
-- task's log and in what order. A task that logs nothing has no row here.
--
-- One row per task that ever logged. It is written before the first object of a run
-- goes to the blob store, so every object under `logs/<task id>/` belongs to a task
-- with a row here: deleting a task's log means deleting that prefix, then the row.
CREATE TABLE task_logs (
    task_id        bigint      PRIMARY KEY
                   CONSTRAINT task_logs_task_id_fkey REFERENCES tasks (id) ON DELETE CASCADE,
    -- The log's length in bytes: the end of its last segment.
    bytes          bigint      NOT NULL DEFAULT 0,
    -- The number of segments written; the last segment's `seq`.
    segments       integer     NOT NULL DEFAULT 0,
    -- The log reached the task log cap and later lines were dropped.
    truncated      boolean     NOT NULL DEFAULT false,
    -- Once the task has finished: the one object holding the whole log. The segment
    -- rows are deleted in the same transaction that sets it.
    compacted_key  text,
    -- Housekeeping claims an uncompacted log of a finished task until then.
    compact_after  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Logs still in segments: those of running tasks, and any left behind by a node that
-- died before it could compact them. Housekeeping walks only these.
CREATE INDEX task_logs_uncompacted ON task_logs (task_id) WHERE compacted_key IS NULL;

-- One object per flush of a run: `bytes` bytes of the log starting at `first_byte`.
CREATE TABLE task_log_segments (
    task_id     bigint      NOT NULL
                CONSTRAINT task_log_segments_task_id_fkey
                REFERENCES task_logs (task_id) ON DELETE CASCADE,
    seq         integer     NOT NULL,
    -- The attempt that wrote it; only the node holding that attempt could add it.
    attempt     integer     NOT NULL,
    first_byte  bigint      NOT NULL,
    bytes       bigint      NOT NULL CONSTRAINT task_log_segments_bytes_check CHECK (bytes > 0),
    blob_key    text        NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_log_segments_pkey PRIMARY KEY (task_id, seq),
    -- Segments never overlap; and a follower finds the segment holding its offset
    -- through this index instead of reading every segment of a long log.
    CONSTRAINT task_log_segments_first_byte_key UNIQUE (task_id, first_byte)
);

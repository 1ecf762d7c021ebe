-- A project × environment may ask for one automatic rollback when a deployment there
-- fails. The rollback records that a node queued it by itself; the unique index makes a
-- second automatic rollback of the same deployment impossible, whichever node tries.
CREATE TABLE auto_rollbacks (
    project_id     bigint      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    environment_id bigint      NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, environment_id)
);

ALTER TABLE deployments ADD COLUMN automatic_rollback boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX deployments_one_automatic_rollback ON deployments (rollback_of)
    WHERE automatic_rollback;

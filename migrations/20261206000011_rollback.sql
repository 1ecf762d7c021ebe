-- A rollback redeploys an earlier release of a project × environment; it records the
-- deployment it rolls back, so it can be told apart from an ordinary deployment.
ALTER TABLE deployments
    ADD COLUMN rollback_of bigint REFERENCES deployments (id) ON DELETE SET NULL;

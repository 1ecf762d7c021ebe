-- Scheduled deployments, queue hygiene and an explicit order of the task queue.

-- When a deployment may start at the earliest, and the time after which it must not
-- start at all (it is cancelled instead). Both are optional.
ALTER TABLE deployments ADD COLUMN deploy_at timestamptz;
ALTER TABLE deployments ADD COLUMN no_deploy_after timestamptz;
-- A queued deployment that never started and was replaced by a newer one of the same
-- project × environment names that one here (it is cancelled).
ALTER TABLE deployments ADD COLUMN superseded_by bigint REFERENCES deployments (id)
    ON DELETE SET NULL;

-- Queued, never-started deployments of one project × environment, found when a newer
-- one is queued (superseding) and by the expiry sweep.
CREATE INDEX deployments_waiting ON deployments (project_id, environment_id, id)
    WHERE state = 'queued' AND started_at IS NULL;
CREATE INDEX deployments_expiring ON deployments (no_deploy_after)
    WHERE state = 'queued' AND started_at IS NULL AND no_deploy_after IS NOT NULL;

-- The queue's order: a task's place in line is coalesce(queue_order, id), so a task
-- keeps its id's place until an operator moves it to the front (queue_order is then
-- below every queued task's). Nullable, so neither this migration nor any insert has
-- to write it.
ALTER TABLE tasks ADD COLUMN queue_order bigint;
CREATE INDEX tasks_queued_order ON tasks ((coalesce(queue_order, id))) WHERE state = 'queued';
CREATE INDEX tasks_queued_concurrency_key_order ON tasks (concurrency_key, (coalesce(queue_order, id)))
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
DROP INDEX tasks_queued_concurrency_key;

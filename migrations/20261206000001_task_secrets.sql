-- Sensitive values of a task's commands (a script's sensitive variables) are sealed
-- in `secrets` like project variables, and opened only when a command is handed to
-- its agent. They belong to their task and go with it.
ALTER TABLE secrets ADD COLUMN task_id bigint
    CONSTRAINT secrets_task_id_fkey REFERENCES tasks (id) ON DELETE CASCADE;
CREATE INDEX secrets_task_id ON secrets (task_id) WHERE task_id IS NOT NULL;

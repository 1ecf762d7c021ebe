-- `resume`: rescue queues the task again like `requeue`, but the commands it sent to
-- agents go on running, and the next attempt adopts them instead of sending them
-- again. A script that may change a machine then runs once even when the node that
-- sent it is lost.
ALTER TABLE tasks DROP CONSTRAINT tasks_on_node_lost_check,
    ADD CONSTRAINT tasks_on_node_lost_check
        CHECK (on_node_lost IN ('fail', 'requeue', 'resume'));

-- Whether an unfinished agent command still works for its task: the one rule every
-- mailbox statement (poll, acknowledgement, standing, orphan sweep) applies, so that
-- they cannot disagree. A command belongs to the attempt that sent it, unless its task
-- resumes: then it belongs to the task for as long as some attempt will run it.
-- NULL when the task is gone (a LEFT JOIN found none); callers say what that means.
-- Plain SQL, so the planner inlines it into each statement.
CREATE FUNCTION agent_command_live(task_state text, task_attempt integer,
                                   on_node_lost text, command_attempt integer)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (task_state = 'running' AND task_attempt = command_attempt)
        OR (on_node_lost = 'resume' AND task_state IN ('queued', 'running'))
$$;

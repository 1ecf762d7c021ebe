-- The dashboard reads the newest deployment of each project × environment, and the
-- newest one that succeeded on a machine: both are index walks, never scans.
CREATE INDEX deployments_cell ON deployments (project_id, environment_id, id DESC);
CREATE INDEX deployment_cells_machine ON deployment_cells (agent_id, deployment_id)
    WHERE state = 'succeeded';

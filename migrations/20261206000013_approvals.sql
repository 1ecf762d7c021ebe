-- Approvals: an environment, or one project in an environment, can require N approvals
-- from a team before a deployment starts. A deployment queued under a rule waits
-- parked (deployments.held says `awaiting_approval`) until enough members approve;
-- one denial cancels it.

CREATE TABLE approval_rules (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A rule goes with its environment or project: no deployment is left to hold.
    environment_id bigint      NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    -- NULL: every project deploying to the environment; a project's rule overrides it.
    project_id     bigint      REFERENCES projects (id) ON DELETE CASCADE,
    -- A team a rule needs cannot be deleted: that would let everything through.
    team_id        bigint      NOT NULL
                   CONSTRAINT approval_rules_team REFERENCES teams (id) ON DELETE RESTRICT,
    needed         integer     NOT NULL
                   CONSTRAINT approval_rules_needed_check CHECK (needed BETWEEN 1 AND 10),
    deployer_may_approve boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX approval_rules_scope ON approval_rules (environment_id, coalesce(project_id, 0));
CREATE INDEX approval_rules_team_id ON approval_rules (team_id);

-- Who queued a deployment (NULL: the admin key, or a user since deleted).
ALTER TABLE deployments ADD COLUMN queued_by bigint REFERENCES users (id) ON DELETE SET NULL;

-- Approvals and denials given, one per person and deployment.
CREATE TABLE deployment_approvals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id bigint      NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    -- NULL once the user is deleted; the name stays.
    user_id       bigint      REFERENCES users (id) ON DELETE SET NULL,
    user_name     text        NOT NULL,
    decision      text        NOT NULL
                  CONSTRAINT deployment_approvals_decision_check
                  CHECK (decision IN ('approve', 'deny')),
    note          text        NOT NULL DEFAULT '',
    given_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX deployment_approvals_once ON deployment_approvals (deployment_id, user_id);
CREATE INDEX deployment_approvals_user ON deployment_approvals (user_id);

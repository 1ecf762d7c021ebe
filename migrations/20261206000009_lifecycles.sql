-- Lifecycles: ordered phases of environments a release is promoted through. A project
-- without one may deploy any release anywhere, in any order.

CREATE TABLE lifecycles (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX lifecycles_name ON lifecycles (lower(name));

CREATE TABLE lifecycle_phases (
    lifecycle_id bigint  NOT NULL REFERENCES lifecycles (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    name         text    NOT NULL,
    rule         text    NOT NULL
                 CONSTRAINT lifecycle_phases_rule_check
                 CHECK (rule IN ('all', 'at_least', 'optional')),
    -- Only for `at_least`.
    min_count    integer CONSTRAINT lifecycle_phases_min_count_check
                 CHECK ((rule = 'at_least') = (min_count IS NOT NULL) AND min_count IS DISTINCT FROM 0),
    CONSTRAINT lifecycle_phases_pkey PRIMARY KEY (lifecycle_id, position)
);

-- An environment deleted leaves its phases; a phase left without any then no longer
-- blocks a release under the `all` rule.
CREATE TABLE lifecycle_phase_environments (
    lifecycle_id   bigint  NOT NULL,
    position       integer NOT NULL,
    environment_id bigint  NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    CONSTRAINT lifecycle_phase_environments_phase FOREIGN KEY (lifecycle_id, position)
        REFERENCES lifecycle_phases (lifecycle_id, position) ON DELETE CASCADE,
    CONSTRAINT lifecycle_phase_environments_once UNIQUE (lifecycle_id, environment_id)
);

ALTER TABLE projects ADD COLUMN lifecycle_id bigint
    CONSTRAINT projects_lifecycle REFERENCES lifecycles (id);

-- The lifecycle check counts a release's successes by environment.
CREATE INDEX deployments_release_state ON deployments (release_id, state);

-- Projects with their deployment process and variables, and releases: frozen copies
-- of all three. Sensitive values live only in `secrets`, encrypted; rows here point
-- at them.

CREATE TABLE projects (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text        NOT NULL,
    description       text        NOT NULL DEFAULT '',
    -- The steps, as the API spells them: editors send and get the whole document.
    process           jsonb       NOT NULL DEFAULT '[]',
    -- Optimistic concurrency: every save of the process or the variables raises its
    -- version, and a save based on an older one is refused.
    process_version   bigint      NOT NULL DEFAULT 0,
    variables_version bigint      NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX projects_name ON projects (lower(name));

CREATE TABLE project_variables (
    id         uuid    PRIMARY KEY,
    project_id bigint  NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    name       text    NOT NULL,
    -- Exactly one of the two: a clear value, or the secret holding a sensitive one.
    value      text,
    secret_id  uuid    REFERENCES secrets (id),
    scope      jsonb   NOT NULL DEFAULT '{}',
    CHECK ((value IS NULL) <> (secret_id IS NULL))
);
CREATE INDEX project_variables_project ON project_variables (project_id, position);

CREATE TABLE releases (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id        bigint      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version           text        NOT NULL,
    -- Sorts byte-wise as versions order, to find the newest.
    version_key       text        COLLATE "C" NOT NULL,
    notes             text        NOT NULL DEFAULT '',
    process           jsonb       NOT NULL,
    process_version   bigint      NOT NULL,
    variables_version bigint      NOT NULL,
    -- [{step, action, package_id, version}]
    packages          jsonb       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX releases_version ON releases (project_id, lower(version));
CREATE INDEX releases_newest ON releases (project_id, version_key DESC);

-- A release's variables are copies: a sensitive one is sealed again under its own
-- secret, since a ciphertext opens only in the row it was made for.
CREATE TABLE release_variables (
    release_id  bigint  NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    variable_id uuid    NOT NULL,
    name        text    NOT NULL,
    value       text,
    secret_id   uuid    REFERENCES secrets (id),
    scope       jsonb   NOT NULL,
    PRIMARY KEY (release_id, position),
    CHECK ((value IS NULL) <> (secret_id IS NULL))
);

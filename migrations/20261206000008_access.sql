-- Roles, teams and grants. A grant gives a team's members a role's permissions in
-- some projects and environments: NULL means all of them, an array means those only.
-- An empty array means none, so deleting a project or an environment (which takes its
-- id out of every grant) narrows a grant and never widens it.

CREATE TABLE roles (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    built_in    boolean     NOT NULL DEFAULT false,
    permissions text[]      NOT NULL CONSTRAINT roles_permissions CHECK (permissions <@ ARRAY[
        'view', 'edit_process', 'create_release', 'deploy', 'answer_interventions',
        'manage_projects', 'manage_environments', 'manage_agents', 'manage_nodes',
        'manage_users', 'view_audit']::text[]),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_name ON roles (lower(name));

-- The built-in roles, as capstan_core::access::BUILT_IN_ROLES lists them; the node
-- refuses to change or delete a built-in row.
INSERT INTO roles (name, description, built_in, permissions) VALUES
    ('project viewer', 'sees projects, releases, deployments, environments and agents', true,
        ARRAY['view']),
    ('project contributor', 'edits processes and variables and creates releases', true,
        ARRAY['view', 'edit_process', 'create_release']),
    ('project lead', 'a contributor who also deploys, answers interventions and manages projects', true,
        ARRAY['view', 'edit_process', 'create_release', 'deploy', 'answer_interventions', 'manage_projects']),
    ('deployer', 'deploys releases and answers interventions', true,
        ARRAY['view', 'deploy', 'answer_interventions']),
    ('environment manager', 'manages environments and the agents in them', true,
        ARRAY['view', 'manage_environments', 'manage_agents']),
    ('system administrator', 'everything', true,
        ARRAY['view', 'edit_process', 'create_release', 'deploy', 'answer_interventions',
              'manage_projects', 'manage_environments', 'manage_agents', 'manage_nodes',
              'manage_users', 'view_audit']);

CREATE TABLE teams (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX teams_name ON teams (lower(name));

CREATE TABLE team_members (
    team_id bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT team_members_pkey PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE grants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id         bigint      NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    -- A role in use cannot be deleted: take it out of the grants first.
    role_id         bigint      NOT NULL CONSTRAINT grants_role_id_fkey REFERENCES roles (id) ON DELETE RESTRICT,
    project_ids     bigint[],
    environment_ids bigint[],
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grants_team ON grants (team_id);

CREATE FUNCTION grants_forget_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE grants SET project_ids = array_remove(project_ids, OLD.id)
    WHERE OLD.id = ANY (project_ids);
    RETURN OLD;
END $$;
CREATE TRIGGER grants_forget_project AFTER DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION grants_forget_project();

CREATE FUNCTION grants_forget_environment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE grants SET environment_ids = array_remove(environment_ids, OLD.id)
    WHERE OLD.id = ANY (environment_ids);
    RETURN OLD;
END $$;
CREATE TRIGGER grants_forget_environment AFTER DELETE ON environments
    FOR EACH ROW EXECUTE FUNCTION grants_forget_environment();

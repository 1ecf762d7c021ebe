-- The audit log: one row per change made through the API, and per login and failed
-- login. A change writes its row in its own transaction, so there is never a change
-- without its row nor a row without its change. Rows are never updated; only the
-- retention sweep deletes them, after archiving them to the blob store.

CREATE TABLE audit_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_kind     text        NOT NULL CONSTRAINT audit_actor_kind
                   CHECK (actor_kind IN ('person', 'service', 'admin_key', 'agent', 'anonymous')),
    -- The user's or agent's id; none for the admin key or an anonymous caller.
    actor_id       bigint,
    actor_name     text        NOT NULL,
    auth_method    text        NOT NULL CONSTRAINT audit_auth_method
                   CHECK (auth_method IN ('admin_key', 'api_key', 'password', 'oidc',
                                          'agent_credential', 'registration_token', 'none')),
    -- The public part of the credential: an API key's id, a session's id, an agent's
    -- registration token id. Never a secret.
    credential     text,
    address        text,
    action         text        NOT NULL,
    object_kind    text        NOT NULL,
    object_id      text,
    object_name    text,
    project_id     bigint,
    environment_id bigint,
    -- The object before and after the change: null before a create and after a delete.
    -- Sensitive values are replaced by "changed" or "unchanged" before they get here.
    before         jsonb,
    after          jsonb
);
CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_actor ON audit_events (actor_kind, actor_id, id);
CREATE INDEX audit_events_object ON audit_events (object_kind, object_id, id);
CREATE INDEX audit_events_project ON audit_events (project_id, id) WHERE project_id IS NOT NULL;
CREATE INDEX audit_events_environment ON audit_events (environment_id, id)
    WHERE environment_id IS NOT NULL;
CREATE INDEX audit_events_action ON audit_events (action, id);

-- Rows are history: nothing may rewrite one, whatever the caller.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are never changed';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- Changes a node makes by itself (a lifecycle's automatic deployment, an automatic
-- rollback, retention) are audited with actor kind `system`, named after the node.
ALTER TABLE audit_events DROP CONSTRAINT audit_actor_kind;
ALTER TABLE audit_events ADD CONSTRAINT audit_actor_kind
    CHECK (actor_kind IN ('person', 'service', 'admin_key', 'agent', 'anonymous', 'system'));

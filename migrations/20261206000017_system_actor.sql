-- Changes a node makes by itself (an expired or superseded deployment cancelled, a
-- lifecycle's automatic deployment, an automatic rollback, release retention) are
-- audited with actor kind `system`, named after what made them.
ALTER TABLE audit_events DROP CONSTRAINT audit_actor_kind;
ALTER TABLE audit_events ADD CONSTRAINT audit_actor_kind
    CHECK (actor_kind IN ('person', 'service', 'admin_key', 'agent', 'anonymous', 'system'));

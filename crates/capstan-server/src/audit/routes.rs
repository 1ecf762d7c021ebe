//! Which action each mutating route records. A test compares these lists with the
//! OpenAPI document's POST, PUT, PATCH and DELETE operations, so a new mutating route
//! cannot ship without a decision about its audit row.

/// `(method, path, action)` for every route that changes something.
pub const AUDITED_ROUTES: &[(&str, &str, &str)] = &[
    // `node.drain` when the change starts draining it.
    ("patch", "/api/nodes/{id}", "node.update"),
    ("delete", "/api/nodes/{id}", "node.delete"),
    ("post", "/api/tasks", "task.create"),
    ("post", "/api/tasks/batch", "task.batch"),
    ("post", "/api/tasks/{id}/cancel", "task.cancel"),
    (
        "post",
        "/api/tasks/{id}/move-to-front",
        "task.move_to_front",
    ),
    ("post", "/api/master-key/rotate", "master_key.rotate"),
    ("post", "/api/packages/raw", "package.upload"),
    ("delete", "/api/packages/{id}/{version}", "package.delete"),
    (
        "post",
        "/api/tasks/{id}/artifacts/{name}",
        "artifact.upload",
    ),
    ("post", "/api/scripts", "script.run"),
    (
        "post",
        "/api/agents/registration-tokens",
        "registration_token.create",
    ),
    (
        "delete",
        "/api/agents/registration-tokens/{id}",
        "registration_token.delete",
    ),
    ("post", "/api/agents/register", "agent.register"),
    ("patch", "/api/agents/{id}", "agent.update"),
    ("delete", "/api/agents/{id}", "agent.delete"),
    ("post", "/api/environments", "environment.create"),
    ("put", "/api/environments/{id}", "environment.update"),
    ("delete", "/api/environments/{id}", "environment.delete"),
    ("post", "/api/lifecycles", "lifecycle.create"),
    ("delete", "/api/lifecycles/{id}", "lifecycle.delete"),
    ("put", "/api/lifecycles/{id}", "lifecycle.update"),
    ("put", "/api/projects/{id}/lifecycle", "project.lifecycle"),
    (
        "put",
        "/api/projects/{id}/auto-rollback",
        "project.auto_rollback",
    ),
    ("post", "/api/projects", "project.create"),
    ("patch", "/api/projects/{id}", "project.update"),
    ("delete", "/api/projects/{id}", "project.delete"),
    ("put", "/api/projects/{id}/process", "process.update"),
    ("put", "/api/projects/{id}/variables", "variables.update"),
    ("post", "/api/releases", "release.create"),
    ("delete", "/api/releases/{id}", "release.delete"),
    // With `override_freeze`, also `deployment.override_freeze`.
    ("post", "/api/deployments", "deployment.create"),
    ("post", "/api/freezes", "freeze.create"),
    ("put", "/api/freezes/{id}", "freeze.update"),
    ("delete", "/api/freezes/{id}", "freeze.delete"),
    ("post", "/api/deployments/{id}/cancel", "deployment.cancel"),
    (
        "post",
        "/api/deployments/{id}/abandon",
        "deployment.abandon",
    ),
    (
        "post",
        "/api/deployments/{id}/interventions/{iid}",
        "deployment.answer",
    ),
    (
        "put",
        "/api/environments/{id}/approval-rule",
        "approval_rule.set",
    ),
    (
        "delete",
        "/api/environments/{id}/approval-rule",
        "approval_rule.delete",
    ),
    (
        "post",
        "/api/deployments/{id}/approve",
        "deployment.approve",
    ),
    ("post", "/api/deployments/{id}/deny", "deployment.deny"),
    ("post", "/api/users", "user.create"),
    ("patch", "/api/users/{id}", "user.update"),
    ("delete", "/api/users/{id}", "user.delete"),
    ("post", "/api/users/{id}/api-keys", "api_key.create"),
    (
        "delete",
        "/api/users/{id}/api-keys/{key_id}",
        "api_key.revoke",
    ),
    // A refused password or code records `login.failed` instead.
    ("post", "/api/login", "login"),
    ("post", "/api/login/api-key", "login"),
    ("post", "/api/login/cli-code", "login"),
    ("post", "/api/logout", "logout"),
    ("put", "/api/users/{id}/password", "user.set_password"),
    ("post", "/api/roles", "role.create"),
    ("patch", "/api/roles/{id}", "role.update"),
    ("delete", "/api/roles/{id}", "role.delete"),
    ("post", "/api/teams", "team.create"),
    ("patch", "/api/teams/{id}", "team.update"),
    ("delete", "/api/teams/{id}", "team.delete"),
    // Adding a member again records it too, with the member as its `before`.
    ("post", "/api/teams/{id}/members", "team.member_add"),
    (
        "delete",
        "/api/teams/{id}/members/{user_id}",
        "team.member_remove",
    ),
    ("post", "/api/teams/{id}/grants", "grant.create"),
    (
        "delete",
        "/api/teams/{id}/grants/{grant_id}",
        "grant.delete",
    ),
];

/// `(method, path, why)` for the POSTs that change nothing an operator made: they
/// record no row.
pub const UNAUDITED_ROUTES: &[(&str, &str, &str)] = &[
    (
        "post",
        "/api/projects/{id}/variables/preview",
        "evaluates a template; changes nothing",
    ),
    (
        "post",
        "/api/agent/commands/{id}/ack",
        "an agent's progress on a command an audited change sent",
    ),
    (
        "post",
        "/api/agent/commands/{id}/output",
        "an agent's progress on a command an audited change sent",
    ),
    (
        "post",
        "/api/agent/commands/{id}/result",
        "an agent's progress on a command an audited change sent",
    ),
];

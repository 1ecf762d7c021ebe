//! For every operation of the OpenAPI document: it declares its requirement; a caller
//! with every permission but on another project and environment, and one without any
//! grant, are refused (403, or 404 where existence would leak, or a list without the
//! objects); a caller granted exactly the needed permission on the right scope is not.

use std::time::Duration;

use capstan_testkit::ADMIN_KEY;
use serde_json::{Value, json};

use super::{
    call, create_environment, create_key, create_role, create_team, create_user, environment_id,
    grant, ids, member, role_id,
};
use crate::deployments::{Fleet, step};

const PERMISSIONS: [&str; 12] = [
    "view",
    "edit_process",
    "create_release",
    "deploy",
    "answer_interventions",
    "manage_projects",
    "manage_environments",
    "manage_agents",
    "manage_nodes",
    "manage_users",
    "view_audit",
    "override_freeze",
];

/// The operations any authenticated caller may use: the roles (a vocabulary) and the
/// lists, which show each caller only what it may view.
const OPEN: [&str; 13] = [
    // The caller's own session only.
    "GET /api/session",
    "POST /api/logout",
    "GET /api/roles",
    "GET /api/roles/{id}",
    "GET /api/agents",
    "GET /api/dashboard",
    "GET /api/deployments",
    "GET /api/environments",
    "GET /api/projects",
    "GET /api/releases",
    "GET /api/tasks",
    // Approvals: rules and waiting deployments the caller may view.
    "GET /api/approval-rules",
    "GET /api/approvals",
];

/// Deletions run last, the ones whose objects others hang on after those others.
const DELETE_ORDER: [&str; 13] = [
    "/api/agents/registration-tokens/{id}",
    "/api/users/{id}/api-keys/{key_id}",
    "/api/teams/{id}/members/{user_id}",
    "/api/teams/{id}/grants/{grant_id}",
    "/api/teams/{id}",
    "/api/roles/{id}",
    "/api/packages/{id}/{version}",
    "/api/releases/{id}",
    "/api/agents/{id}",
    "/api/nodes/{id}",
    "/api/users/{id}",
    "/api/environments/{id}",
    "/api/projects/{id}",
];

/// The objects path parameters are filled with.
struct World {
    shop: i64,
    release: i64,
    deployment: i64,
    task: i64,
    production: i64,
    agent: i64,
    node: String,
    token: i64,
    victim: i64,
    victim_key: String,
    victim_team: i64,
    victim_grant: i64,
    custom_role: i64,
    freeze: i64,
}

impl World {
    fn fill(&self, path: &str) -> String {
        let id = if path.starts_with("/api/projects/") {
            self.shop.to_string()
        } else if path.starts_with("/api/releases/") {
            self.release.to_string()
        } else if path.starts_with("/api/deployments/") {
            self.deployment.to_string()
        } else if path.starts_with("/api/tasks/") {
            self.task.to_string()
        } else if path.starts_with("/api/environments/") {
            self.production.to_string()
        } else if path.starts_with("/api/agents/registration-tokens/") {
            self.token.to_string()
        } else if path.starts_with("/api/agents/") {
            self.agent.to_string()
        } else if path.starts_with("/api/nodes/") {
            self.node.clone()
        } else if path.starts_with("/api/packages/") {
            "web".to_owned()
        } else if path.starts_with("/api/users/") {
            self.victim.to_string()
        } else if path.starts_with("/api/teams/") {
            self.victim_team.to_string()
        } else if path.starts_with("/api/roles/") {
            self.custom_role.to_string()
        } else if path.starts_with("/api/lifecycles/") {
            "1".to_owned()
        } else if path.starts_with("/api/freezes/") {
            self.freeze.to_string()
        } else {
            String::new()
        };
        path.replace("{id}", &id)
            .replace("{iid}", "1")
            .replace("{name}", "out.txt")
            .replace("{version}", "1.0.0")
            .replace("{key_id}", &self.victim_key)
            .replace("{user_id}", &self.victim.to_string())
            .replace("{grant_id}", &self.victim_grant.to_string())
    }

    /// The object a list must show its viewer and hide from others.
    fn listed(&self, path: &str) -> Option<i64> {
        match path {
            "/api/projects" => Some(self.shop),
            "/api/releases" => Some(self.release),
            "/api/deployments" => Some(self.deployment),
            "/api/tasks" => Some(self.task),
            "/api/environments" => Some(self.production),
            "/api/agents" => Some(self.agent),
            _ => None,
        }
    }

    /// How the access layer words a hidden object of `scope` (as a missing one).
    fn hidden(&self, scope: &str, path: &str) -> Option<String> {
        Some(match scope {
            "task" if path.contains("/artifacts") || path.ends_with("/commands") => {
                format!("there is no task {}", self.task)
            }
            "project" => format!("there is no project {}", self.shop),
            "release" => format!("there is no release {}", self.release),
            "deployment" => format!("there is no deployment {}", self.deployment),
            "task" => format!("there is no task with id {}", self.task),
            "agent_environment" => format!("there is no agent {}", self.agent),
            "environment" => format!("there is no environment {}", self.production),
            _ => return None,
        })
    }

    fn body(&self, method: &str, path: &str) -> Option<Value> {
        match (method, path) {
            ("POST", "/api/releases") => Some(json!({ "project_id": self.shop })),
            ("POST", "/api/deployments") => Some(json!({
                "release_id": self.release, "environment": "Production"
            })),
            // A window of Production only, far off.
            ("POST" | "PUT", "/api/freezes" | "/api/freezes/{id}") => Some(json!({
                "name": if method == "POST" { "matrix new" } else { "matrix" },
                "start": "2099-12-24T00:00:00Z", "end": "2099-12-27T00:00:00Z",
                "environments": ["Production"],
            })),
            ("POST" | "PUT" | "PATCH", _) => Some(json!({})),
            _ => None,
        }
    }
}

/// The window `{id}` of `/api/freezes/{id}` is.
fn world_freeze_body() -> Option<Value> {
    Some(json!({
        "name": "matrix",
        "start": "2099-12-24T00:00:00Z", "end": "2099-12-27T00:00:00Z",
        "environments": ["Production"],
    }))
}

/// The id `fill` puts for `{id}` in `template`.
fn path_id(world: &World, template: &str) -> String {
    let filled = world.fill(template);
    let prefix = &template[..template.find("{id}").unwrap_or(template.len())];
    filled[prefix.len()..]
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Whether a refused caller's answer is a refusal of the kind `scope` calls for.
fn refused(scope: &str, status: u16, body: &Value, world: &World, path: &str) -> bool {
    match scope {
        "listed" => status == 200 && world.listed(path).is_none_or(|id| !ids(body).contains(&id)),
        "body" => {
            (status == 422
                && body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("there is no")))
                || (status == 403 && body["missing_permission"].is_string())
        }
        "system" | "any_project" | "own_user" => {
            status == 403 && body["missing_permission"].is_string()
        }
        _ => status == 404 || (status == 403 && body["missing_permission"].is_string()),
    }
}

#[tokio::test]
async fn every_endpoint_refuses_callers_without_its_permission_and_admits_those_with_it() {
    let fleet = Fleet::start(1, 1).await;
    let node = fleet.cluster.node(0).url();
    let (shop, release) = fleet
        .release("Shop", json!([step("hello", "echo hi")]), json!([]))
        .await;
    let deployment = fleet
        .deploy(json!({ "release_id": release, "environment": "Production" }))
        .await;
    let shown = fleet
        .wait_state(
            deployment,
            &["succeeded", "failed", "cancelled", "aborted"],
            Duration::from_secs(60),
        )
        .await;
    let task = shown["task_id"].as_i64().unwrap();
    let production = environment_id(&node, "Production").await;
    let other = fleet.api.project("Other").await;
    let elsewhere = create_environment(&node, "Elsewhere").await;
    let (_, agents) = call(&node, ADMIN_KEY, "GET", "/api/agents", None).await;
    let agent = ids(&agents)[0];
    let (_, nodes) = call(&node, ADMIN_KEY, "GET", "/api/nodes", None).await;
    let node_id = nodes[0]["id"].as_str().unwrap().to_owned();
    let (status, token) = call(
        &node,
        ADMIN_KEY,
        "POST",
        "/api/agents/registration-tokens",
        Some(json!({ "note": "matrix" })),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let victim = create_user(&node, "victim", "person").await;
    let victim_key = create_key(&node, victim, json!({ "purpose": "matrix" })).await;
    let victim_team = create_team(&node, "victims").await;
    super::add_member(&node, victim_team, victim).await;
    let viewer = role_id(&node, "project viewer").await;
    let victim_grant = grant(&node, victim_team, viewer, Some(&[shop]), None).await;
    let custom_role = create_role(&node, "custom", &["view"]).await;
    let (status, freeze) = call(
        &node,
        ADMIN_KEY,
        "POST",
        "/api/freezes",
        world_freeze_body(),
    )
    .await;
    assert_eq!(status, 201, "{freeze}");
    let world = World {
        shop,
        release,
        deployment,
        task,
        production,
        agent,
        node: node_id,
        token: token["id"].as_i64().unwrap(),
        victim,
        victim_key: victim_key["key_id"].as_str().unwrap().to_owned(),
        victim_team,
        victim_grant,
        custom_role,
        freeze: freeze["id"].as_i64().unwrap(),
    };

    let mut only = std::collections::HashMap::new();
    for permission in PERMISSIONS {
        let role = create_role(&node, &format!("only {permission}"), &[permission]).await;
        only.insert(permission, role);
    }
    let (_, outsider, outsider_team) = member(&node, "outsider").await;
    let administrator = role_id(&node, "system administrator").await;
    grant(
        &node,
        outsider_team,
        administrator,
        Some(&[other]),
        Some(&[elsewhere]),
    )
    .await;
    let nobody_id = create_user(&node, "nobody", "service").await;
    let nobody = create_key(&node, nobody_id, json!({ "purpose": "matrix" })).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, insider, insider_team) = member(&node, "insider").await;

    let (status, doc) = call(&node, ADMIN_KEY, "GET", "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut operations = Vec::new();
    let mut undeclared = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            match operation.get("x-capstan-access") {
                Some(access) => operations.push((method, path.clone(), access.clone())),
                None => undeclared.push(format!("{method} {path}")),
            }
        }
    }
    assert!(
        undeclared.is_empty(),
        "operations without a declared permission: {undeclared:?}"
    );
    let rank = |method: &str, path: &str| match method {
        "DELETE" => 1 + DELETE_ORDER.iter().position(|p| *p == path).unwrap_or(0),
        _ => 0,
    };
    operations.sort_by_key(|(method, path, _)| (rank(method, path), path.clone()));

    // Only these may be open to any authenticated caller: anything else declared so
    // would slip past the checks below.
    let open: Vec<_> = operations
        .iter()
        .filter(|(_, _, access)| {
            matches!(access["scope"].as_str(), Some("authenticated" | "listed"))
        })
        .map(|(method, path, _)| format!("{method} {path}"))
        .filter(|operation| !OPEN.contains(&operation.as_str()))
        .collect();
    assert!(open.is_empty(), "open to any caller: {open:?}");

    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, template, access) in &operations {
        let scope = access["scope"].as_str().unwrap();
        if matches!(scope, "public" | "agent") {
            continue;
        }
        checked += 1;
        let permission = access["permission"].as_str().unwrap_or("view");
        let path = world.fill(template);
        let body = world.body(method, template);

        // What the admin hears about a missing object on this route: a hidden one must
        // read the same, with its own id.
        let hideable = world.hidden(scope, template).is_some();
        let missing = if hideable {
            let missing_path = world.fill(&template.replace("{id}", "987654321"));
            let (status, answer) =
                call(&node, ADMIN_KEY, method, &missing_path, body.clone()).await;
            (status == 404).then(|| {
                answer["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .replace("987654321", &path_id(&world, template))
            })
        } else {
            None
        };
        for (who, key) in [("outsider", &outsider), ("nobody", &nobody)] {
            let (status, answer) = call(&node, key, method, &path, body.clone()).await;
            if let Some(wording) = &missing
                && (status != 404 || answer["detail"] != wording.as_str())
            {
                failures.push(format!(
                    "{who}: {method} {template} tells a hidden object from a missing one (\"{wording}\"): {status} {answer}"
                ));
            }
            let expected_refusal = match (scope, who) {
                ("authenticated", _) => status != 401 && status != 403,
                // The shared feed admits any grant of the permission, wherever.
                ("any_project", "outsider") => status != 403,
                _ => refused(scope, status, &answer, &world, template),
            };
            if !expected_refusal {
                failures.push(format!(
                    "{who}: {method} {template} ({scope}, {permission}) answered {status} {answer}"
                ));
            }
        }

        // The insider holds exactly the permission, on Shop in Production (or on
        // everything where the scope is system-wide).
        let (_, grants) = call(
            &node,
            ADMIN_KEY,
            "GET",
            &format!("/api/teams/{insider_team}/grants"),
            None,
        )
        .await;
        for id in ids(&grants) {
            let (status, _) = call(
                &node,
                ADMIN_KEY,
                "DELETE",
                &format!("/api/teams/{insider_team}/grants/{id}"),
                None,
            )
            .await;
            assert_eq!(status, 204);
        }
        if scope != "authenticated" {
            let everywhere = matches!(scope, "system" | "own_user");
            // A project's own things need no environment in the grant.
            let project_only = matches!(scope, "project" | "release" | "any_project");
            grant(
                &node,
                insider_team,
                only[permission],
                (!everywhere).then_some(&[shop][..]),
                (!everywhere && !project_only).then_some(&[production][..]),
            )
            .await;
        }
        let (status, answer) = call(&node, &insider, method, &path, body.clone()).await;
        let hidden = status == 404
            && world
                .hidden(scope, template)
                .is_some_and(|wording| answer["detail"] == wording.as_str());
        let missing_from_list = scope == "listed"
            && world
                .listed(template)
                .is_some_and(|id| !ids(&answer).contains(&id));
        if status == 403 || status == 401 || hidden || missing_from_list || status >= 500 {
            failures.push(format!(
                "insider: {method} {template} ({scope}, {permission}) answered {status} {answer}"
            ));
        }
    }
    assert!(checked > 70, "only {checked} operations checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

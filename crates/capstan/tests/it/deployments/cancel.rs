//! Cancel stops the agents' processes and closes the grid; abandon is only for a
//! cancel that could not complete.

use std::time::Duration;

use serde_json::json;

use super::{Fleet, states_in, step};

const WITHIN: Duration = Duration::from_secs(60);

fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn cancel_stops_the_agents_and_a_finished_or_running_deployment_refuses_the_rest() {
    let fleet = Fleet::start(1, 3).await;
    let body = format!(
        "echo $$ > {}/pid-#{{Capstan.Machine.Name}}\nexec sleep 30",
        fleet.dir().display()
    );
    let (project, release) = fleet
        .release("Slow", json!([step("Sleep", &body)]), json!([]))
        .await;
    let request =
        json!({ "release_id": release, "environment": "Production", "project_id": project });
    let id = fleet.deploy(request.clone()).await;
    capstan_testkit::eventually(WITHIN, "three sleeping agents", || async {
        (fleet.marked("pid-").len() == 3).then_some(())
    })
    .await;
    let pids: Vec<String> = fleet
        .marked("pid-")
        .iter()
        .map(|name| {
            std::fs::read_to_string(fleet.dir().join(format!("pid-{name}")))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    assert!(pids.iter().all(|p| alive(p)), "{pids:?}");

    let (status, body) = fleet
        .api
        .post(
            &format!("/api/deployments/{id}/cancel"),
            json!({ "note": "wrong day" }),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let done = fleet
        .wait_state(
            id,
            &["cancelled", "failed", "succeeded"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(done["state"], "cancelled", "{done:#}");
    assert_eq!(done["stopped_by"]["who"], "admin key", "{done:#}");
    let cells = states_in(&done, 0);
    assert_eq!(cells.len(), 3);
    assert!(cells.values().all(|s| s == &["cancelled"]), "{done:#}");
    capstan_testkit::eventually(Duration::from_secs(10), "the sleeps to stop", || async {
        pids.iter().all(|p| !alive(p)).then_some(())
    })
    .await;
    // The deployment is cancelled at once; each command is once its agent confirms.
    let commands = capstan_testkit::eventually(
        Duration::from_secs(10),
        "the agents to confirm the cancel",
        || async {
            let commands = fleet.commands(&done).await;
            commands
                .iter()
                .all(|c| c["state"] == "cancelled")
                .then_some(commands)
        },
    )
    .await;
    assert_eq!(commands.len(), 3, "{commands:#?}");

    let (status, body) = fleet
        .api
        .post(&format!("/api/deployments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");

    // Abandon is for a cancel that could not complete, not for a running deployment.
    for name in fleet.marked("pid-") {
        std::fs::remove_file(fleet.dir().join(format!("pid-{name}"))).unwrap();
    }
    let id = fleet.deploy(request).await;
    capstan_testkit::eventually(WITHIN, "three sleeping agents", || async {
        (fleet.marked("pid-").len() == 3).then_some(())
    })
    .await;
    let (status, body) = fleet
        .api
        .post(&format!("/api/deployments/{id}/abandon"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(!crate::projects::detail(&body).is_empty(), "{body}");
    let (status, body) = fleet
        .api
        .post(&format!("/api/deployments/{id}/cancel"), json!({}))
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    fleet
        .wait_state(id, &["cancelled"], Duration::from_secs(20))
        .await;
}

//! The machine mutex and named locks, across deployments of different projects,
//! proven by the times each script recorded on its machine.

use std::time::Duration;

use serde_json::{Value, json};

use super::Fleet;

/// A step whose script appends `<start> <end> <deployment>` to `file`, sleeping
/// `seconds` in between.
fn timed_step(name: &str, file: &std::path::Path, seconds: f64) -> Value {
    json!({
        "name": name,
        "target_tags": ["web"],
        "actions": [{
            "kind": "script",
            "syntax": "bash",
            "body": format!(
                "start=$(date +%s.%N); sleep {seconds}; echo \"$start $(date +%s.%N) #{{Capstan.Deployment.Id}}\" >> {}.#{{Capstan.Machine.Name}}",
                file.display()
            ),
        }],
    })
}

/// Intervals recorded in `<file>.<machine>`: (start, end, deployment).
fn intervals(file: &std::path::Path, machine: &str) -> Vec<(f64, f64, String)> {
    let text = std::fs::read_to_string(format!("{}.{machine}", file.display())).unwrap_or_default();
    let mut found: Vec<(f64, f64, String)> = text
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found
}

/// Whether any two intervals of different deployments overlap.
fn any_overlap(intervals: &[(f64, f64, String)]) -> bool {
    intervals
        .windows(2)
        .any(|w| w[1].0 < w[0].1 && w[0].2 != w[1].2)
        || intervals
            .iter()
            .enumerate()
            .any(|(i, a)| intervals[i + 1..].iter().any(|b| b.0 < a.1 && a.2 != b.2))
}

#[tokio::test]
async fn deployments_of_two_projects_never_overlap_on_a_machine_unless_a_step_bypasses_the_mutex() {
    let fleet = Fleet::start_with_cap(1, Some(10), 3).await;
    let guarded = fleet.dir().join("guarded");
    let free = fleet.dir().join("free");
    let mut bypassing = timed_step("Free", &free, 1.0);
    bypassing["bypass_machine_mutex"] = json!(true);
    let (_, shop) = fleet
        .release(
            "Shop",
            json!([timed_step("Deploy", &guarded, 1.0), bypassing.clone()]),
            json!([]),
        )
        .await;
    let (_, blog) = fleet
        .release(
            "Blog",
            json!([timed_step("Deploy", &guarded, 1.0), bypassing]),
            json!([]),
        )
        .await;
    let first = fleet
        .deploy(json!({ "release_id": shop, "environment": "Production" }))
        .await;
    let second = fleet
        .deploy(json!({ "release_id": blog, "environment": "Production" }))
        .await;
    // While one holds the machines, the other's cells say who holds them.
    let waiting = super::eventually_cell(&fleet, second, "waiting", Duration::from_secs(20)).await;
    assert_eq!(
        waiting["waiting_for"]["reason"], "machine_mutex",
        "{waiting}"
    );
    assert_eq!(waiting["waiting_for"]["deployment_id"], first);
    assert_eq!(waiting["waiting_for"]["project"], "Shop");
    for id in [first, second] {
        let done = fleet
            .wait_state(id, &["succeeded", "failed"], Duration::from_secs(60))
            .await;
        assert_eq!(done["state"], "succeeded", "{done:#}");
    }
    for machine in ["web01", "web02", "web03"] {
        let guarded = intervals(&guarded, machine);
        assert_eq!(guarded.len(), 2, "{guarded:?}");
        assert!(!any_overlap(&guarded), "{machine}: {guarded:?}");
    }
    // A bypassing step takes no mutex, so the first deployment's `Free` step runs
    // while the second's guarded step holds the machine.
    let mut overlapped = false;
    for machine in ["web01", "web02", "web03"] {
        let mut all = intervals(&guarded, machine);
        all.extend(intervals(&free, machine));
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        overlapped |= any_overlap(&all);
    }
    assert!(
        overlapped,
        "a step bypassing the mutex should overlap the other deployment"
    );
}

#[tokio::test]
async fn a_named_lock_serialises_one_step_across_thirty_deployments_while_their_other_steps_overlap()
 {
    const DEPLOYMENTS: usize = 30;
    let fleet = Fleet::start_with_cap(1, Some(40), 1).await;
    let before = fleet.dir().join("before");
    let locked = fleet.dir().join("locked");
    let after = fleet.dir().join("after");
    let mut releases = Vec::new();
    for i in 0..DEPLOYMENTS {
        let mut a = timed_step("Prepare", &before, 0.5);
        let mut b = timed_step("Migrate", &locked, 0.2);
        let mut c = timed_step("Finish", &after, 0.5);
        for step in [&mut a, &mut b, &mut c] {
            step["bypass_machine_mutex"] = json!(true);
        }
        b["lock"] = json!({ "name": "schema", "scope": "machine" });
        let (_, release) = fleet
            .release(&format!("Service {i}"), json!([a, b, c]), json!([]))
            .await;
        releases.push(release);
    }
    let mut ids = Vec::new();
    for release in releases {
        ids.push(
            fleet
                .deploy(json!({ "release_id": release, "environment": "Production" }))
                .await,
        );
    }
    for id in &ids {
        let done = fleet
            .wait_state(*id, &["succeeded", "failed"], Duration::from_secs(120))
            .await;
        assert_eq!(done["state"], "succeeded", "{done:#}");
    }
    let locked = intervals(&locked, "web01");
    assert_eq!(locked.len(), DEPLOYMENTS);
    assert!(
        !any_overlap(&locked),
        "the locked step overlapped: {locked:?}"
    );
    let before = intervals(&before, "web01");
    assert!(
        any_overlap(&before),
        "the unlocked steps never overlapped: {before:?}"
    );
}

#[tokio::test]
async fn an_environment_lock_is_shared_by_one_deployments_targets_and_never_by_two_deployments() {
    let fleet = Fleet::start_with_cap(1, Some(10), 3).await;
    let locked = fleet.dir().join("env-locked");
    let mut releases = Vec::new();
    for name in ["Shop", "Blog", "Wiki"] {
        let mut migrate = timed_step("Migrate", &locked, 0.4);
        migrate["bypass_machine_mutex"] = json!(true);
        migrate["lock"] = json!({ "name": "schema", "scope": "environment" });
        let (_, release) = fleet.release(name, json!([migrate]), json!([])).await;
        releases.push(release);
    }
    let mut ids = Vec::new();
    for release in releases {
        ids.push(
            fleet
                .deploy(json!({ "release_id": release, "environment": "Production" }))
                .await,
        );
    }
    for id in &ids {
        let done = fleet
            .wait_state(*id, &["succeeded", "failed"], Duration::from_secs(60))
            .await;
        assert_eq!(done["state"], "succeeded", "{done:#}");
    }
    let mut all = Vec::new();
    for machine in ["web01", "web02", "web03"] {
        all.extend(intervals(&locked, machine));
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(all.len(), 9, "{all:?}");
    // Across machines, two deployments never held the environment's lock at once...
    assert!(!any_overlap(&all), "two deployments overlapped: {all:?}");
    // ...while one deployment's three machines ran the step together.
    let together = all
        .iter()
        .enumerate()
        .any(|(i, a)| all[i + 1..].iter().any(|b| b.2 == a.2 && b.0 < a.1));
    assert!(
        together,
        "one deployment's targets never overlapped: {all:?}"
    );
}

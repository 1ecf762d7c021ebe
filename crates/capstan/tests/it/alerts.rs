//! The shipped alerting rules (helm/capstan/files/alerts.yml), evaluated by a real
//! Prometheus scraping real nodes. Their logic is unit-tested by
//! scripts/check-alerts.sh; this shows they fit the metrics and labels nodes export.

use std::{collections::BTreeSet, path::Path, time::Duration};

use capstan_testkit::{
    TempDir, TestDatabase, eventually,
    process::start_servers,
    prometheus::{Alert, Prometheus},
};

use crate::capstan_bin;

const SHIPPED_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../helm/capstan/files/alerts.yml"
);

/// The shipped rules with every `for:` cut to 2 s, written into `dir`. The shipped
/// durations (a minute and more) are right for production and too slow for a test;
/// only the durations change, never an expression.
fn rules_with_short_for(dir: &Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(SHIPPED_RULES).expect("reading the shipped alerts.yml");
    let mut replaced = 0;
    let rules: String = shipped
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            if line.trim_start().starts_with("for:") {
                replaced += 1;
                format!("{}for: 2s\n", &line[..indent])
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(replaced > 0, "no `for:` in the shipped rules");
    let path = dir.join("alerts.yml");
    std::fs::write(&path, rules).expect("writing the test copy of alerts.yml");
    path
}

fn node_not_seen(alerts: &[Alert], state: &str) -> BTreeSet<String> {
    alerts
        .iter()
        .filter(|a| a.name == "CapstanNodeNotSeen" && a.state == state)
        .filter_map(|a| a.label("instance").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_killed_node_fires_node_not_seen_for_that_node_only() {
    let db = TestDatabase::new().await;
    let dir = TempDir::new("capstan-alerts");
    let mut nodes = start_servers(&capstan_bin(), &["n1", "n2", "n3"], &db.url, &dir.0).await;
    let instances: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let prometheus = Prometheus::start("capstan", &instances, &rules_with_short_for(&dir.0)).await;

    // The first scrape comes a few seconds after Prometheus starts.
    prometheus
        .wait_for_targets_up("capstan", 3, Duration::from_secs(30))
        .await;
    // CapstanTasksRescued takes `increase()`, which sees a node's first rescue only if
    // the counter was already there at zero.
    let rescued = prometheus.query("capstan_tasks_rescued_total").await;
    assert_eq!(
        rescued.len(),
        3 * 3,
        "capstan_tasks_rescued_total for each node and state (queued, failed, cancelled): {rescued:?}"
    );
    assert!(rescued.iter().all(|(_, v)| *v == 0.0), "{rescued:?}");
    let alerts = prometheus.alerts().await;
    assert!(
        node_not_seen(&alerts, "pending").is_empty() && node_not_seen(&alerts, "firing").is_empty(),
        "CapstanNodeNotSeen with every node up: {alerts:#?}"
    );
    // Until the first scrape no node was seen at all; one evaluation later that clears.
    eventually(
        Duration::from_secs(10),
        "CapstanNoNodeSeen to clear",
        || async {
            let alerts = prometheus.alerts().await;
            (!alerts.iter().any(|a| a.name == "CapstanNoNodeSeen")).then_some(())
        },
    )
    .await;

    let killed = &instances[1];
    nodes[1].kill_9();
    let killed_at = std::time::Instant::now();
    let alert = eventually(
        Duration::from_secs(30),
        &format!("CapstanNodeNotSeen firing for n2 ({killed}) after SIGKILL"),
        || async {
            let alerts = prometheus.alerts().await;
            let firing = node_not_seen(&alerts, "firing");
            if firing.is_empty() {
                return None;
            }
            assert_eq!(
                firing,
                BTreeSet::from([killed.clone()]),
                "CapstanNodeNotSeen must fire for the killed node only: {alerts:#?}"
            );
            alerts
                .into_iter()
                .find(|a| a.name == "CapstanNodeNotSeen" && a.state == "firing")
        },
    )
    .await;
    eprintln!(
        "CapstanNodeNotSeen fired {:?} after SIGKILL (test `for: 2s`)",
        killed_at.elapsed()
    );
    assert_eq!(alert.label("severity"), Some("ticket"));
    assert_eq!(
        alert.annotation("summary"),
        Some(format!("Capstan node n2 at {killed} has not been scraped for 1 minute").as_str()),
        "the summary names the node by its CAPSTAN_NODE_NAME"
    );
    assert_eq!(
        alert.annotation("runbook_url"),
        Some("docs/operations.md#capstannodenotseen")
    );
    assert!(
        !prometheus
            .alerts()
            .await
            .iter()
            .any(|a| a.name == "CapstanNoNodeSeen"),
        "two nodes still answer, yet CapstanNoNodeSeen is active"
    );
}

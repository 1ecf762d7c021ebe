//! The node's Prometheus metrics, declared once and described.
//!
//! Each node keeps its own recorder instead of the process-wide one, so several nodes
//! in one process (`capstan dev`, the test cluster) each report only themselves.
//! Labels take bounded values only: route templates, methods, status codes.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::NodeState;

static METADATA: Metadata<'static> = Metadata::new("capstan", Level::INFO, Some(module_path!()));

/// Latency buckets from 1 ms to 30 s: API calls are fast, long-polls and drains are not.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Queue waits range from a millisecond on an idle cluster to hours behind a backlog.
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// A node's metrics.
pub struct NodeMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    state: Arc<NodeState>,
    draining: Gauge,
    task_cap: Gauge,
    running_tasks: Gauge,
    pub heartbeat_duration: Histogram,
    pub heartbeat_failures: Counter,
    pub database_up: Gauge,
    pub blob_store_up: Gauge,
    pub blob_bytes_received: Counter,
    pub blob_bytes_sent: Counter,
    pub claim_duration: Histogram,
    pub queue_wait: Histogram,
    pub tasks_claimed: Counter,
    pub tasks_fenced: Counter,
    pub task_log_bytes: Counter,
    pub task_log_write_failures: Counter,
    pub task_logs_compacted: Counter,
    tasks_queued: Gauge,
    tasks_running: Gauge,
    queue_oldest: Gauge,
    pub agent_polls: Counter,
    pub agent_mailbox_reads: Counter,
    pub agent_polls_waiting: InFlightGauge,
}

/// A gauge of things in progress: [`InFlightGauge::track`] counts one until dropped.
#[derive(Clone)]
pub struct InFlightGauge(Gauge);

impl InFlightGauge {
    pub fn track(&self) -> impl Drop {
        struct Tracked(Gauge);
        impl Drop for Tracked {
            fn drop(&mut self) {
                self.0.decrement(1.0);
            }
        }
        self.0.increment(1.0);
        Tracked(self.0.clone())
    }
}

impl NodeMetrics {
    pub fn new(state: &Arc<NodeState>) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("capstan_task_queue_wait_seconds".to_owned()),
                QUEUE_WAIT_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let r = &recorder;
        describe_gauge(
            r,
            "capstan_node_info",
            "Always 1; the labels name the node and its version.",
        );
        describe_gauge(
            r,
            "capstan_node_draining",
            "1 while the node is draining (ping answers 418).",
        );
        describe_gauge(
            r,
            "capstan_node_task_cap",
            "How many tasks the node may run at once.",
        );
        describe_gauge(
            r,
            "capstan_node_running_tasks",
            "Tasks the node is running now.",
        );
        describe_gauge(
            r,
            "capstan_node_database_up",
            "1 if the last heartbeat reached PostgreSQL, else 0.",
        );
        describe_gauge(
            r,
            "capstan_node_blob_store_up",
            "1 if the last probe of the blob store (write, read, delete) succeeded, else 0.",
        );
        r.describe_counter(
            KeyName::from("capstan_blob_received_bytes_total"),
            Some(Unit::Bytes),
            "Bytes of packages and artifacts this node received and stored.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_blob_sent_bytes_total"),
            Some(Unit::Bytes),
            "Bytes of packages and artifacts this node sent to clients.".into(),
        );
        r.describe_histogram(
            KeyName::from("capstan_node_heartbeat_duration_seconds"),
            Some(Unit::Seconds),
            "Time to record a heartbeat and read back the node's settings.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_node_heartbeat_failures_total"),
            Some(Unit::Count),
            "Heartbeats that did not reach PostgreSQL.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_http_requests_total"),
            Some(Unit::Count),
            "HTTP requests served, by route template, method and status.".into(),
        );
        r.describe_histogram(
            KeyName::from("capstan_http_request_duration_seconds"),
            Some(Unit::Seconds),
            "Time to answer an HTTP request, by route template and method.".into(),
        );
        describe_gauge(
            r,
            "capstan_tasks",
            "Tasks in the cluster by state (queued, running), as this node last counted them.",
        );
        describe_gauge(
            r,
            "capstan_task_queue_oldest_seconds",
            "How long the oldest queued task has waited, as this node last looked.",
        );
        r.describe_histogram(
            KeyName::from("capstan_task_queue_wait_seconds"),
            Some(Unit::Seconds),
            "Time from queued to started, for tasks this node claimed.".into(),
        );
        r.describe_histogram(
            KeyName::from("capstan_task_claim_duration_seconds"),
            Some(Unit::Seconds),
            "Time of one claim cycle: write finished outcomes, claim into free slots, commit."
                .into(),
        );
        r.describe_counter(
            KeyName::from("capstan_tasks_claimed_total"),
            Some(Unit::Count),
            "Tasks this node claimed.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_tasks_finished_total"),
            Some(Unit::Count),
            "Tasks this node finished, by kind and outcome.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_tasks_rescued_total"),
            Some(Unit::Count),
            "Tasks of lost nodes this node rescued, by the state rescue left them in (queued, failed, cancelled).".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_tasks_fenced_total"),
            Some(Unit::Count),
            "Runs this node stopped or whose outcome was refused because it no longer held the lease.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_task_log_bytes_total"),
            Some(Unit::Bytes),
            "Bytes of task log this node stored, in segments.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_task_log_write_failures_total"),
            Some(Unit::Count),
            "Task log segments this node failed to store (retried), and last lines it gave up on."
                .into(),
        );
        r.describe_counter(
            KeyName::from("capstan_task_logs_compacted_total"),
            Some(Unit::Count),
            "Logs of finished tasks this node compacted into one object.".into(),
        );

        r.describe_counter(
            KeyName::from("capstan_agent_polls_total"),
            Some(Unit::Count),
            "Long polls agents made to this node.".into(),
        );
        r.describe_counter(
            KeyName::from("capstan_agent_mailbox_reads_total"),
            Some(Unit::Count),
            "Mailbox queries those polls needed (an idle agent's poll needs none).".into(),
        );
        describe_gauge(
            r,
            "capstan_agent_polls_waiting",
            "Agent long polls this node holds open now.",
        );

        let info_labels = vec![
            Label::new("node_name", state.name.clone()),
            Label::new("version", state.version),
        ];
        r.register_gauge(
            &Key::from_parts("capstan_node_info", info_labels),
            &METADATA,
        )
        .set(1.0);
        let database_up = r.register_gauge(&Key::from_name("capstan_node_database_up"), &METADATA);
        database_up.set(1.0);
        let blob_store_up =
            r.register_gauge(&Key::from_name("capstan_node_blob_store_up"), &METADATA);
        blob_store_up.set(1.0);
        // Present at zero from the start: a series that first appears at 1 is an
        // increase `increase()` cannot see, so the first rescue would never alert.
        for state in ["queued", "failed", "cancelled"] {
            r.register_counter(
                &Key::from_parts(
                    "capstan_tasks_rescued_total",
                    vec![Label::new("state", state)],
                ),
                &METADATA,
            )
            .increment(0);
        }
        Self {
            agent_polls: r
                .register_counter(&Key::from_name("capstan_agent_polls_total"), &METADATA),
            agent_mailbox_reads: r.register_counter(
                &Key::from_name("capstan_agent_mailbox_reads_total"),
                &METADATA,
            ),
            agent_polls_waiting: InFlightGauge(
                r.register_gauge(&Key::from_name("capstan_agent_polls_waiting"), &METADATA),
            ),
            blob_store_up,
            blob_bytes_received: r.register_counter(
                &Key::from_name("capstan_blob_received_bytes_total"),
                &METADATA,
            ),
            blob_bytes_sent: r
                .register_counter(&Key::from_name("capstan_blob_sent_bytes_total"), &METADATA),
            draining: r.register_gauge(&Key::from_name("capstan_node_draining"), &METADATA),
            task_cap: r.register_gauge(&Key::from_name("capstan_node_task_cap"), &METADATA),
            running_tasks: r
                .register_gauge(&Key::from_name("capstan_node_running_tasks"), &METADATA),
            heartbeat_duration: r.register_histogram(
                &Key::from_name("capstan_node_heartbeat_duration_seconds"),
                &METADATA,
            ),
            heartbeat_failures: r.register_counter(
                &Key::from_name("capstan_node_heartbeat_failures_total"),
                &METADATA,
            ),
            database_up,
            claim_duration: r.register_histogram(
                &Key::from_name("capstan_task_claim_duration_seconds"),
                &METADATA,
            ),
            queue_wait: r.register_histogram(
                &Key::from_name("capstan_task_queue_wait_seconds"),
                &METADATA,
            ),
            tasks_claimed: r
                .register_counter(&Key::from_name("capstan_tasks_claimed_total"), &METADATA),
            tasks_fenced: r
                .register_counter(&Key::from_name("capstan_tasks_fenced_total"), &METADATA),
            task_log_bytes: r
                .register_counter(&Key::from_name("capstan_task_log_bytes_total"), &METADATA),
            task_log_write_failures: r.register_counter(
                &Key::from_name("capstan_task_log_write_failures_total"),
                &METADATA,
            ),
            task_logs_compacted: r.register_counter(
                &Key::from_name("capstan_task_logs_compacted_total"),
                &METADATA,
            ),
            tasks_queued: r.register_gauge(
                &Key::from_parts("capstan_tasks", vec![Label::new("state", "queued")]),
                &METADATA,
            ),
            tasks_running: r.register_gauge(
                &Key::from_parts("capstan_tasks", vec![Label::new("state", "running")]),
                &METADATA,
            ),
            queue_oldest: r.register_gauge(
                &Key::from_name("capstan_task_queue_oldest_seconds"),
                &METADATA,
            ),
            handle,
            recorder: Arc::new(recorder),
            state: state.clone(),
        }
    }

    /// Counts one answered request.
    pub fn record_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("method", method.to_owned()),
            Label::new("status", status.to_string()),
        ];
        self.recorder
            .register_counter(
                &Key::from_parts("capstan_http_requests_total", labels),
                &METADATA,
            )
            .increment(1);
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("method", method.to_owned()),
        ];
        self.recorder
            .register_histogram(
                &Key::from_parts("capstan_http_request_duration_seconds", labels),
                &METADATA,
            )
            .record(seconds);
    }

    /// Counts a task this node finished. Kinds come from the registry, so the label is
    /// bounded.
    pub fn record_finished(&self, kind: &str, outcome: &str) {
        let labels = vec![
            Label::new("kind", kind.to_owned()),
            Label::new("outcome", outcome.to_owned()),
        ];
        self.recorder
            .register_counter(
                &Key::from_parts("capstan_tasks_finished_total", labels),
                &METADATA,
            )
            .increment(1);
    }

    /// Counts a task rescued from a lost node.
    pub fn record_rescued(&self, state: &str) {
        let labels = vec![Label::new("state", state.to_owned())];
        self.recorder
            .register_counter(
                &Key::from_parts("capstan_tasks_rescued_total", labels),
                &METADATA,
            )
            .increment(1);
    }

    /// Sets the queue gauges from a fresh count.
    pub fn record_queue(&self, stats: capstan_db::queue::QueueStats) {
        self.tasks_queued.set(stats.queued as f64);
        self.tasks_running.set(stats.running as f64);
        self.queue_oldest.set(stats.oldest_queued_age);
    }

    /// The Prometheus text exposition of this node, with gauges read fresh.
    pub fn render(&self) -> String {
        self.draining
            .set(if self.state.draining() { 1.0 } else { 0.0 });
        self.task_cap.set(f64::from(self.state.task_cap()));
        self.running_tasks
            .set(f64::from(self.state.running_tasks()));
        self.handle.run_upkeep();
        self.handle.render()
    }
}

fn describe_gauge(recorder: &PrometheusRecorder, name: &'static str, help: &'static str) {
    recorder.describe_gauge(KeyName::from(name), None, help.into());
}

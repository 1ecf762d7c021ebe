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
}

impl NodeMetrics {
    pub fn new(state: &Arc<NodeState>) -> Self {
        let recorder = PrometheusBuilder::new()
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
        Self {
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

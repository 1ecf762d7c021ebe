//! Logs and traces: structured logs to stdout (text or JSON), and OTLP trace export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterFn, filter_fn},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::LogFormat;

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes the last spans.
#[must_use = "dropping it without shutdown loses the last spans"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

/// The default filter: our own info, other crates' warnings.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,tower_http=warn,opentelemetry=warn,hyper=warn,h2=warn,reqwest=warn";

/// Whether an event or span may be logged whatever `RUST_LOG` says. tokio-postgres
/// logs every statement's bind parameters at debug level, and those parameters can
/// hold what must never be logged (see docs/security.md): its debug and trace output
/// is dropped. (sqlx logs statements without their parameters.)
pub fn never_secret(metadata: &tracing::Metadata<'_>) -> bool {
    !(metadata.target().starts_with("tokio_postgres") && *metadata.level() > tracing::Level::INFO)
}

/// Installs the global subscriber. Call it before starting the async runtime: the
/// OTLP exporter builds a blocking HTTP client, which must not happen on a runtime thread.
pub fn init(format: LogFormat) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A request's span carries its facts for traces; its log line names them already,
    // and a span printed as the context of every line inside the request would repeat
    // them on each (the JSON format leaves span context out for the same reason).
    let without_request_spans =
        filter_fn(|meta| !(meta.is_span() && meta.name() == crate::http::REQUEST_SPAN));
    let fmt_layer = match format {
        // Colours only for a person at a terminal: in a file or a log shipper the escape
        // codes are noise.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    let (otel_layer, tracer_provider) = if endpoint.trim().is_empty() {
        (None, None)
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot export traces to {endpoint}: {e}"))?;
        let service_name =
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "capstan".to_owned());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name)
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        crate::VERSION,
                    ))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("capstan");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Some(provider),
        )
    };
    tracing_subscriber::registry()
        .with(FilterFn::new(never_secret))
        .with(filter)
        .with(fmt_layer.with_filter(without_request_spans))
        .with(otel_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    if !endpoint.trim().is_empty() {
        tracing::info!("exporting traces to {endpoint}");
    }
    Ok(Telemetry { tracer_provider })
}

impl Telemetry {
    /// Flushes and stops the trace exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("could not flush the last traces: {e}");
            }
        }
    }
}

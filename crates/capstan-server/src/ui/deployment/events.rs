//! `GET /deployments/{id}/events`: the deployment page, live. The node reads the
//! deployment through the API (as the signed-in person, like the page) every
//! [`POLL`], renders it as the page does, and sends what changed: the header, the
//! interventions panel, or only the cells whose state or text changed (the whole table
//! when its rows or columns changed). The stream ends with an `end` event once the
//! deployment has finished, and when the node stops serving.
//!
//! Each event's `id` is a digest of everything shown ([`Rendered::version`]), the same
//! on every node. A browser that reconnects (to this node or another, through the load
//! balancer) sends it back as `Last-Event-ID`; the page itself passes the version it
//! was rendered at as `?since=`. When that is the current version nothing needs
//! sending; otherwise the stream starts with the whole current state and then sends
//! changes. This is the simplest way to be correct after any gap: the browser never
//! has to be sent a change relative to a state this node never saw.

use std::{
    convert::Infallible,
    sync::{Arc, LazyLock},
    time::Duration,
};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use capstan_api::deployments::DeploymentResponse;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::{
    super::{Ui, caller::Viewer, error::UiError},
    queued_by, read,
    render::{self, Rendered},
};

/// How often the deployment is read while somebody watches it.
const POLL: Duration = Duration::from_millis(250);
/// A comment line this often, so proxies keep an idle stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How soon a browser reconnects after losing the stream.
const RETRY: Duration = Duration::from_secs(1);
/// The most live pages a node process streams at once: each reads its deployment four
/// times a second. A page refused one still shows the deployment, without updates.
const MAX_STREAMS: usize = 200;

static STREAMS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_STREAMS)));

#[derive(Debug, Deserialize)]
pub(crate) struct Since {
    since: Option<String>,
}

/// One `grid` event: what changed since the last one.
#[derive(Debug, Serialize)]
struct Change<'a> {
    /// The whole state (after a (re)connect that was not up to date).
    full: bool,
    /// The node sending it.
    node: &'a str,
    /// The deployment's state word.
    state: &'a str,
    finished: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interventions: Option<&'a str>,
    /// The whole table, when its layout changed (then `cells` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    grid: Option<String>,
    /// Changed cells: element id, state word, inner HTML.
    cells: Vec<[&'a str; 3]>,
}

/// `GET /deployments/{id}/events`.
pub(crate) async fn stream(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(since): Query<Since>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    // Refusals (no such deployment, not allowed) are answered before streaming.
    let first = read(&ui, &viewer.caller, id).await?;
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(since.since);
    let Ok(permit) = STREAMS.clone().try_acquire_owned() else {
        return Err(UiError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node streams {MAX_STREAMS} live pages already; refresh to see changes"),
        ));
    };
    let (tx, rx) = mpsc::channel(16);
    let node = ui.ctx.state.name.clone();
    tokio::spawn(async move {
        follow(ui, viewer, id, first, since, tx).await;
        drop(permit);
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    })
    .map(Ok::<_, Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    // Proxies that buffer answers (nginx) would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(node) = HeaderValue::from_str(&node) {
        headers.insert("x-capstan-node", node);
    }
    Ok(response)
}

/// Reads, renders and sends until the deployment finishes, the browser goes away, the
/// session ends or the node stops serving.
async fn follow(
    ui: Arc<Ui>,
    viewer: Viewer,
    id: i64,
    first: DeploymentResponse,
    since: Option<String>,
    tx: mpsc::Sender<Event>,
) {
    let node = ui.ctx.state.name.clone();
    let by = queued_by(&ui, &viewer.caller, id).await;
    let mut deployment = first;
    let mut shown: Option<(Rendered, String)> = None;
    loop {
        let now = Rendered::of(&deployment, &viewer, by.as_deref());
        let version = now.version();
        let change = match &shown {
            None if since.as_deref() == Some(version.as_str()) => {
                Some(nothing_new(&node, &now, &deployment))
            }
            None => Some(everything(&node, &now, &deployment)),
            Some((_, before)) if *before == version => None,
            Some((before, _)) => Some(difference(&node, before, &now, &deployment)),
        };
        if let Some(change) = change {
            let Ok(mut event) = Event::default()
                .event("grid")
                .id(&version)
                .json_data(&change)
            else {
                return;
            };
            if shown.is_none() {
                event = event.retry(RETRY);
            }
            if tx.send(event).await.is_err() {
                return;
            }
        }
        let finished = now.finished;
        shown = Some((now, version));
        if finished {
            let _ = tx
                .send(
                    Event::default()
                        .event("end")
                        .data(deployment.summary.state.as_str()),
                )
                .await;
            return;
        }
        deployment = loop {
            let carry_on = tokio::select! {
                () = tokio::time::sleep(POLL) => true,
                () = tx.closed() => false,
                () = ui.ctx.http_stop.cancelled() => false,
            };
            if !carry_on {
                return;
            }
            match read(&ui, &viewer.caller, id).await {
                Ok(deployment) => break deployment,
                // The session ended or the deployment is gone (or no longer visible):
                // the browser's reconnect gets the page's answer to that.
                Err(UiError::SignIn(_) | UiError::SignInFirst { .. } | UiError::Problem { .. }) => {
                    return;
                }
                // A passing failure (the database restarting): try again.
                Err(UiError::Internal(detail)) => {
                    tracing::debug!(
                        deployment.id = id,
                        "the live grid could not read the deployment: {detail}"
                    );
                }
            }
        };
    }
}

fn nothing_new<'a>(
    node: &'a str,
    now: &'a Rendered,
    deployment: &'a DeploymentResponse,
) -> Change<'a> {
    Change {
        full: false,
        node,
        state: deployment.summary.state.as_str(),
        finished: now.finished,
        header: None,
        interventions: None,
        grid: None,
        cells: Vec::new(),
    }
}

fn everything<'a>(
    node: &'a str,
    now: &'a Rendered,
    deployment: &'a DeploymentResponse,
) -> Change<'a> {
    Change {
        full: true,
        header: Some(&now.header),
        interventions: Some(&now.interventions),
        grid: Some(render::grid(deployment, now).into_string()),
        ..nothing_new(node, now, deployment)
    }
}

fn difference<'a>(
    node: &'a str,
    before: &Rendered,
    now: &'a Rendered,
    deployment: &'a DeploymentResponse,
) -> Change<'a> {
    let mut change = nothing_new(node, now, deployment);
    if before.header != now.header {
        change.header = Some(&now.header);
    }
    if before.interventions != now.interventions {
        change.interventions = Some(&now.interventions);
    }
    if before.layout != now.layout || before.cells.len() != now.cells.len() {
        change.grid = Some(render::grid(deployment, now).into_string());
        return change;
    }
    change.cells = before
        .cells
        .iter()
        .zip(&now.cells)
        .filter(|(old, new)| old != new)
        .map(|(_, (id, state, inner))| [id.as_str(), state.as_str(), inner.as_str()])
        .collect();
    change
}

//! `GET /api/tasks/{id}/log`: a task's log from any node, whether the task runs (on
//! this node or another) or has finished. Plain text by default; with `?follow=true`,
//! server-sent events as the log grows, until the task has finished.
//!
//! Nothing here is held whole in memory: a spawned reader copies the log into a small
//! channel that the response drains, so a slow client slows the reader down.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use bytes::Bytes;
use capstan_api::{
    PageRequest, Problem, TaskLogEnd, TaskLogQuery,
    task_logs::{END_EVENT, EVENT_STREAM},
};
use capstan_db::{
    DbError,
    task_logs::{self, LogView},
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::{
    ApiError,
    extract::{ApiPath, ApiQuery},
    log_pages::{self, PageError},
    log_reader::{LogSink, read_to_end},
};
use crate::node::NodeContext;

/// The header of a page saying how many bytes of the log were read for it.
const BYTES_READ_HEADER: &str = "x-log-bytes-read";

/// When a follower turned away for lack of room should try again, in seconds.
const RETRY_FOLLOW_AFTER: u32 = 5;

/// How often a follower looks for new lines. With segments stored at least every
/// second, a line reaches a follower on any node within about 1.5 s.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// Comments sent on a quiet followed log, so proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Chunks or events buffered between the reader and the client.
const CHANNEL_CAPACITY: usize = 64;

/// `GET /api/tasks/{id}/log`: one line per log line, `<time> <LEVEL> <text>`.
/// `?follow=true`: each line as an event whose `id` is the byte offset past it (send it
/// back as `Last-Event-ID` to resume, or start at `from`), comment keep-alives every
/// 15 s, and a last `end` event with the task's final state. `?tail=N` and
/// `?before=<offset>&lines=N`: a page of lines as JSON, read without reading the log
/// whole.
#[utoipa::path(get, path = "/api/tasks/{id}/log", tag = "tasks", params(
    ("id" = i64, Path),
    TaskLogQuery,
    ("Last-Event-ID" = Option<u64>, Header, description = "With `follow`: resume after the event with this `id`"),
), responses(
    (status = 200, description = "The log as text; with `follow` as server-sent events (the `end` event's data is a TaskLogEnd); with `tail` or `before` a page of lines as JSON, with `x-log-bytes-read` saying how many log bytes were read for it", content(
        (String = "text/plain; charset=utf-8"),
        (capstan_api::SseEvent = "text/event-stream"),
        (capstan_api::TaskLogPage = "application/json"),
    )),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_task_log(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<TaskLogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(request) = query.page().map_err(ApiError::bad_request)? {
        return page(&ctx, id, request).await;
    }
    let resumed = if query.follow {
        resume_offset(&headers).map_err(ApiError::bad_request)?
    } else {
        None
    };
    let from = resumed.or(query.from).unwrap_or(0);
    let permit = if query.follow {
        Some(ctx.log_followers.clone().try_acquire_owned().map_err(|_| {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this node already streams {} task logs (CAPSTAN_MAX_LOG_FOLLOWERS); try again \
                     shortly, or through another node",
                    ctx.settings.max_log_followers
                ),
            );
            error.retry_after = Some(RETRY_FOLLOW_AFTER);
            error
        })?)
    } else {
        None
    };
    let view = task_logs::view(&ctx.pools.api, id, from.min(i64::MAX as u64) as i64)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("there is no task with id {id}")))?;
    if resumed.is_none() && from > view.bytes.max(0) as u64 {
        return Err(ApiError::bad_request(format!(
            "`from` is past the end of the log: it is {} bytes long, got {from}",
            view.bytes
        )));
    }
    Ok(if let Some(permit) = permit {
        follow(ctx, id, from, view, permit)
    } else {
        whole(ctx, id, view)
    })
}

/// A page of the log as JSON (`tail`, `before`), with the log bytes read for it in
/// `x-log-bytes-read`.
async fn page(ctx: &NodeContext, id: i64, request: PageRequest) -> Result<Response, ApiError> {
    let view = task_logs::view(&ctx.pools.api, id, i64::MAX)
        .await
        .map_err(|e| ApiError::from_db(e, || format!("there is no task with id {id}")))?;
    let read = log_pages::read_page(ctx, id, &view, request)
        .await
        .map_err(|e| match e {
            PageError::Bad(detail) => ApiError::bad_request(detail),
            PageError::Read(e) => {
                tracing::warn!(task.id = id, "reading a page of the log of task {id}: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the log of task {id} cannot be read now: {e}"),
                )
            }
        })?;
    let mut response = Json(read.page).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(BYTES_READ_HEADER, HeaderValue::from(read.bytes_read));
    Ok(response)
}

/// The offset a reconnecting follower resumes at, if it says.
fn resume_offset(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "`Last-Event-ID` must be the `id` of an event of this log (a byte offset), got `{}`",
                String::from_utf8_lossy(value.as_bytes())
            )
        })
}

fn whole(ctx: Arc<NodeContext>, id: i64, view: LogView) -> Response {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(async move {
        let mut view = view;
        let mut offset = 0;
        let mut sink = Chunks(tx.clone());
        if let Err(e) = read_to_end(&ctx, id, &mut view, &mut offset, &mut sink).await {
            tracing::warn!(
                task.id = id,
                "reading the log of task {id} stopped at byte {offset}: {e}"
            );
            // Ends the response abnormally, so the client knows the log is cut short.
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (headers, Body::from_stream(receive(rx))).into_response()
}

fn follow(
    ctx: Arc<NodeContext>,
    id: i64,
    from: u64,
    view: LogView,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(async move {
        follow_log(ctx, id, from, view, tx).await;
        drop(permit);
    });
    let events = receive(rx).map(Ok::<_, Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    // Proxies that buffer answers (nginx) would hold lines back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Sends the log's lines as they are stored until the task has finished, then `end`.
/// Stops when the client goes away, when the node stops serving, or when the log
/// cannot be read; a client then reconnects with `Last-Event-ID` (to any node).
async fn follow_log(
    ctx: Arc<NodeContext>,
    id: i64,
    from: u64,
    mut view: LogView,
    tx: mpsc::Sender<Event>,
) {
    let mut offset = from;
    let mut lines = LineEvents {
        tx: tx.clone(),
        partial: Vec::new(),
        next_offset: from,
    };
    loop {
        match read_to_end(&ctx, id, &mut view, &mut offset, &mut lines).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(
                    task.id = id,
                    "following the log of task {id} stopped at byte {offset}: {e}"
                );
                return;
            }
        }
        if view.state.is_finished() {
            let end = TaskLogEnd {
                state: view.state,
                error: view.error.clone(),
            };
            if let Ok(event) = Event::default().event(END_EVENT).json_data(&end) {
                let _ = tx.send(event).await;
            }
            return;
        }
        view = loop {
            if !pause(&ctx, &tx).await {
                return;
            }
            match task_logs::view(&ctx.pools.api, id, offset as i64).await {
                Ok(view) => break view,
                // Deleted while followed: nothing more will come.
                Err(DbError::NotFound) => return,
                Err(e) => {
                    tracing::debug!(task.id = id, "cannot look for new lines of task {id}: {e}")
                }
            }
        };
    }
}

/// Waits one poll interval; false if the client went away or the node stops serving.
async fn pause(ctx: &NodeContext, tx: &mpsc::Sender<Event>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(FOLLOW_POLL) => true,
        () = tx.closed() => false,
        () = ctx.http_stop.cancelled() => false,
    }
}

fn receive<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Passes the log's bytes on as they are.
struct Chunks(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl LogSink for Chunks {
    async fn accept(&mut self, chunk: Bytes) -> bool {
        self.0.send(Ok(chunk)).await.is_ok()
    }
}

/// Turns the log's bytes into one event per line, each with the offset past it.
struct LineEvents {
    tx: mpsc::Sender<Event>,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The log offset of the next byte to arrive.
    next_offset: u64,
}

impl LogSink for LineEvents {
    async fn accept(&mut self, chunk: Bytes) -> bool {
        let mut start = 0;
        while let Some(end) = chunk[start..].iter().position(|b| *b == b'\n') {
            let end = start + end;
            self.partial.extend_from_slice(&chunk[start..end]);
            let past = self.next_offset + end as u64 + 1;
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            let event = Event::default().id(past.to_string()).data(line);
            if self.tx.send(event).await.is_err() {
                return false;
            }
            start = end + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
        self.next_offset += chunk.len() as u64;
        true
    }
}

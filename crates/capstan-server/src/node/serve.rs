//! The accept loop: hyper's HTTP/1.1 connections with the limits a service facing the
//! network needs and `axum::serve` does not set. A connection must send a request's
//! headers within the header-read timeout of its first byte, and may sit idle between
//! requests (or before its first) for the idle timeout; then it is closed. A request
//! being answered is neither: a long poll waits as long as its handler does.
//!
//! HTTP/2 and TLS end at the load balancer; a node speaks HTTP/1.1 only, since hyper's
//! protocol detection would wait for a silent client's first bytes without a limit.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How long a connection may take over each part of its life.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// From a request's first byte to the end of its headers.
    pub header_read: Duration,
    /// With no request under way: after connecting, and between requests.
    pub idle: Duration,
}

/// Serves `app` on `listener` until `stop` is cancelled, then stops accepting and waits
/// for open connections to finish their requests (keep-alive ends after each).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        // Answers are small and latency matters more than packet count.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let reads = Arc::new(FirstRead::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            reads: reads.clone(),
        });
        let service = app.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            },
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(HeaderTimer { reads, limits })
            .header_read_timeout(limits.header_read);
        let connection =
            graceful.watch(builder.serve_connection(io, TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(client.address = %remote, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection (the peer left before it was accepted) are skipped; errors
/// of the listener, such as running out of file descriptors, are waited out, as
/// `axum::serve` does, rather than spun on.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!("cannot accept a connection: {error}; trying again in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// When a connection first received bytes after hyper began waiting for a request.
struct FirstRead {
    /// The connection's birth, so instants fit in an atomic.
    born: Instant,
    /// Nanoseconds after `born`, or `NONE`.
    at: AtomicU64,
}

impl FirstRead {
    const NONE: u64 = u64::MAX;

    fn new() -> Self {
        Self {
            born: Instant::now(),
            at: AtomicU64::new(Self::NONE),
        }
    }

    /// Starts a new wait for a request.
    fn reset(&self) {
        self.at.store(Self::NONE, Ordering::Relaxed);
    }

    fn saw_bytes(&self) {
        let now = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(Self::NONE - 1);
        let _ = self
            .at
            .compare_exchange(Self::NONE, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            Self::NONE => None,
            nanos => Some(self.born + Duration::from_nanos(nanos)),
        }
    }
}

/// A TCP stream that notes when bytes arrive.
struct Watched {
    inner: TcpStream,
    reads: Arc<FirstRead>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.reads.saw_bytes();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The timer hyper runs while it waits for a request's headers (from the moment the
/// connection is ready for one until they are read). Hyper has one limit for that whole
/// wait; this timer makes it two: the idle limit while no byte has come, the header
/// limit from the first byte on.
struct HeaderTimer {
    reads: Arc<FirstRead>,
    limits: ConnectionLimits,
}

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // Hyper asks for this sleep only when it starts waiting for a request.
        self.reads.reset();
        let started = Instant::now();
        Box::pin(HeaderSleep {
            reads: self.reads.clone(),
            limits: self.limits,
            started,
            timer: Box::pin(tokio::time::sleep_until(
                (started + self.limits.idle).into(),
            )),
        })
    }
}

struct HeaderSleep {
    reads: Arc<FirstRead>,
    limits: ConnectionLimits,
    started: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::rt::Sleep for HeaderSleep {}

impl Future for HeaderSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Hyper polls this each time bytes arrive and the headers are not complete yet,
        // so the deadline moves to the header limit as soon as a request begins.
        let deadline = match self.reads.get() {
            Some(first) => first + self.limits.header_read,
            None => self.started + self.limits.idle,
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

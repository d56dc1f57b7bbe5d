//! Accepting connections, with the limits `axum::serve` does not have: a cap on open
//! connections, a time limit on a request's headers, and an idle keep-alive timeout.
//!
//! - **Connection cap**: each connection holds a permit of a semaphore of
//!   `max_connections`. At the cap the loop stops accepting; new clients wait in the
//!   kernel's backlog until a connection closes, and the process never runs out of file
//!   descriptors for its database and provider connections.
//! - **Header timeout**: a client has `header_read_timeout` to send a request's
//!   headers, counted from when the connection opens or from the first byte of the
//!   next request on a kept-alive connection. A client that dribbles half its headers
//!   (slowloris) is cut off then.
//! - **Idle timeout**: a kept-alive connection with no request in flight and no byte of
//!   a new one is closed after `keep_alive_timeout` (longer than the header timeout, so
//!   a proxy in front that pools connections does not race a short close).
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits,
//! which would make the two one; so both are kept here, by a watchdog per connection
//! that reads what the connection's I/O and its requests report. A request in flight
//! (a long checkout call to the provider, an open event stream) is never timed out
//! here. HTTP/1.1 and HTTP/2 (prior knowledge) are both served, as `axum::serve` did.
//!
//! On shutdown the loop stops accepting, each connection finishes its requests in
//! flight and closes, and `serve` returns when every connection has.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The limits of the listener (`PAYBRIDGE_MAX_CONNECTIONS`, …).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `None`: from the open-file limit (see [`default_max_connections`]).
    pub max_connections: Option<usize>,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
        }
    }
}

/// Open files left for everything but client connections: the database pool, calls to
/// the provider, callback deliveries (up to 128 at once), logs.
const RESERVED_FDS: u64 = 512;

/// Connections the process can hold with the open-file limit it has (raised to the hard
/// limit first, as most servers do): the limit less what the rest needs, at least 64
/// and at most 10,000.
pub fn default_max_connections() -> usize {
    let nofile = raise_open_file_limit().unwrap_or(1024);
    nofile.saturating_sub(RESERVED_FDS).clamp(64, 10_000) as usize
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns the soft limit in force.
fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets every open
/// connection finish what it is doing and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let max = limits
        .max_connections
        .unwrap_or_else(default_max_connections)
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let open = Arc::new(AtomicUsize::new(0));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Both timeouts are kept by the watchdog (see the module's notes).
        .header_read_timeout(None)
        .keep_alive(true)
        // A request line and headers of at most 64 KiB; more is a 431.
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let router = router.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(stream, peer, router, &builder, &limits, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let still_open = open.load(Ordering::Relaxed);
    if still_open > 0 {
        tracing::info!(
            connections = still_open,
            "waiting for open connections to finish"
        );
    }
    // Every connection holds a permit: all of them back means all are closed.
    let _all = permits.acquire_many(max as u32).await;
    Ok(())
}

/// What a connection's I/O and requests tell its watchdog.
struct Activity {
    started: Instant,
    /// Requests whose response has not been sent in full (or dropped).
    in_flight: AtomicUsize,
    /// Milliseconds (since `started`) when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Milliseconds (since `started`) of the first byte read while idle, plus one; 0
    /// when none. A new connection counts as having started its first request.
    head_since_ms: AtomicU64,
    /// Set when the watchdog has asked the connection to close.
    closing: AtomicBool,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(0, Ordering::Release);
    }

    fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since_ms.load(Ordering::Acquire) == 0
        {
            let _ = self.head_since_ms.compare_exchange(
                0,
                self.now_ms() + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// When the connection is due to be closed, if it is idle or waiting for headers.
    fn deadline(&self, limits: &Limits) -> Option<(u64, Close)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since_ms.load(Ordering::Acquire);
        if head > 0 {
            let at = head - 1 + limits.header_read_timeout.as_millis() as u64;
            return Some((at, Close::HeadersTooSlow));
        }
        let idle = self.idle_since_ms.load(Ordering::Acquire);
        Some((
            idle + limits.keep_alive_timeout.as_millis() as u64,
            Close::Idle,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    HeadersTooSlow,
    Idle,
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: &Limits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity {
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        idle_since_ms: AtomicU64::new(0),
        // The first request's headers are due from the moment of connecting.
        head_since_ms: AtomicU64::new(1),
        closing: AtomicBool::new(false),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let router = router.clone();
        service_activity.request_started();
        let guard = InFlight(service_activity.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let resp = router.oneshot(req.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|b| {
                Body::new(Guarded {
                    inner: b,
                    _guard: guard,
                })
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut asked_to_finish = false;
    loop {
        let wake = match activity.deadline(limits) {
            Some((at_ms, _)) => activity.started + Duration::from_millis(at_ms),
            // Busy: look again in a while (a finished request updates the times).
            None => Instant::now() + Duration::from_secs(1),
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let Some((at_ms, why)) = activity.deadline(limits) else { continue };
                if activity.now_ms() < at_ms {
                    continue;
                }
                match why {
                    // A client still sending its headers gets no answer: close now.
                    Close::HeadersTooSlow => {
                        tracing::debug!(%peer, "closing a connection: headers too slow");
                        return;
                    }
                    Close::Idle => {
                        if !activity.closing.swap(true, Ordering::AcqRel) {
                            conn.as_mut().graceful_shutdown();
                        } else {
                            // Asked already and still open: nothing is in flight.
                            return;
                        }
                    }
                }
            }
            _ = shutdown.cancelled(), if !asked_to_finish => {
                asked_to_finish = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Counts a request as in flight until its response body is sent or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that holds its request's `InFlight` until it is done.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, telling the watchdog when bytes arrive.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
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

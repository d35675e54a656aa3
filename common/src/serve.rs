//! The HTTP server loop: hyper serving HTTP/1.1 (and h2c) connections from the
//! listener, as `axum::serve` does, with two differences.
//!
//! - Connections are served on their own threads, one single-threaded runtime per core
//!   ([`HttpThreads`]), as nginx's workers or actix-web's do: each connection lives on
//!   the thread with the fewest open ones, and its requests never cross threads. On the
//!   shared work-stealing runtime, parking and waking its workers and sharing one timer
//!   took 1.1 µs of a cached playlist's 8.7 (2026-12-06). Only the requests the caller
//!   picks (`in_place`: playback files) are answered there; the others are handed to the
//!   runtime `serve` runs on, with the database connections and work stealing (on the
//!   threads, API saturation fell 13-15 %). What an in-place request starts with
//!   `tokio::spawn` runs on its connection's thread.
//! - A client gets `header_timeout` to send a request's head, on a new connection and
//!   between requests on a kept-alive one; then the connection is closed. Without it a
//!   client that sends half a request (slowloris), or nothing at all, held its
//!   connection and its buffers for good. Bodies (uploads), responses and upgraded
//!   connections (WebSockets) are not timed here.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::{BoxFuture, Either};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tower::{Service, ServiceExt};

use crate::zero_copy::{SendfileListener, SendfileStream};

/// Threads that serve HTTP connections, each running its own single-threaded tokio
/// runtime. They stop when this is dropped; tasks still running on them (work a request
/// spawned) end then, as they would with the main runtime.
pub struct HttpThreads {
    threads: Vec<HttpThread>,
}

struct HttpThread {
    runtime: Handle,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

impl HttpThreads {
    /// Starts `count` threads (0: one per core).
    pub fn start(count: usize) -> io::Result<Self> {
        let count = if count == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            count
        };
        let threads = (0..count)
            .map(HttpThread::start)
            .collect::<io::Result<_>>()?;
        Ok(HttpThreads { threads })
    }

    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The thread with the fewest open connections; the first of them on a tie.
    fn least_busy(&self) -> &HttpThread {
        self.threads
            .iter()
            .min_by_key(|t| t.open.load(Ordering::Relaxed))
            .expect("at least one HTTP thread")
    }
}

impl HttpThread {
    fn start(index: usize) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("lectern-http-{index}"))
            .spawn(move || {
                // Whether told to stop or dropped, the sender ends the wait.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(HttpThread {
            runtime: handle,
            open: Arc::default(),
            stop: Some(stop),
        })
    }
}

impl Drop for HttpThreads {
    fn drop(&mut self) {
        for thread in &mut self.threads {
            if let Some(stop) = thread.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

/// Counts a connection as open on its thread until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which requests a connection's thread answers itself.
pub type InPlace = fn(&Request) -> bool;

/// Answers the requests `in_place` picks on the connection's thread, and hands the rest
/// to the runtime `serve` was called on: a work-stealing runtime suits requests that
/// wait on a database, whose connections live there.
#[derive(Clone)]
struct HandOff<S> {
    app: S,
    main: Handle,
    in_place: InPlace,
}

impl<S> Service<Request> for HandOff<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if (self.in_place)(&req) {
            return Either::Left(self.app.call(req));
        }
        let mut answer = AbortOnDrop(self.main.spawn(self.app.call(req)));
        Either::Right(Box::pin(async move {
            match (&mut answer.0).await {
                Ok(res) => res,
                Err(e) => {
                    tracing::error!(error = %e, "a request's handler failed");
                    Ok(crate::http::error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the server failed to answer",
                    ))
                }
            }
        }))
    }
}

/// A handed-off request ends with its connection, as one answered in place would.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `app` on every connection `listener` accepts, on `threads`, until `shutdown`
/// resolves; then lets the connections finish the requests in hand and returns once
/// all are closed. Requests `in_place` picks are answered on their connection's
/// thread, the rest on the runtime this is called on. Each request carries
/// `ConnectInfo<SocketAddr>` with its peer's address.
pub async fn serve<S>(
    mut listener: SendfileListener,
    app: S,
    threads: &HttpThreads,
    in_place: InPlace,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // CONNECT protocol, for WebSockets over HTTP/2.
    builder.http2().enable_connect_protocol();
    // Every connection's task holds a receiver: on shutdown the sender tells them all,
    // then waits until the last task has ended and dropped its receiver.
    let (stop_tx, stop_rx) = watch::channel(());
    let app = HandOff {
        app,
        main: Handle::current(),
        in_place,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        // Nagle's algorithm holds the last partial packet of a response (the tail of a
        // segment) until the client's delayed ACK, 40 ms later, on a keep-alive
        // connection.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        // The socket moves to its thread's reactor: readiness is then noticed by the
        // thread that serves it.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "could not hand a connection to its thread");
                continue;
            }
        };
        let thread = threads.least_busy();
        let open = OpenConnection::new(&thread.open);
        let (app, builder, mut stopping) = (app.clone(), builder.clone(), stop_rx.clone());
        thread.runtime.spawn(async move {
            let _open = open;
            let stream = match SendfileStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => return tracing::debug!(error = %e, "could not serve a connection"),
            };
            let service = app.map_request(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            let mut connection = std::pin::pin!(connection);
            let mut asked = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(e) = served {
                            tracing::trace!(error = %e, "connection ended");
                        }
                        break;
                    }
                    // Finish the request in hand, take no other.
                    _ = stopping.changed(), if !asked => {
                        asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    drop(stop_rx);
    stop_tx.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    /// Serves `app` on two threads; returns the address and a sender that stops it.
    async fn start(
        app: axum::Router,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        start_on(app, Arc::new(HttpThreads::start(2).unwrap())).await
    }

    async fn start_on(
        app: axum::Router,
        threads: Arc<HttpThreads>,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        start_with(app, threads, Duration::from_secs(5)).await
    }

    async fn start_with(
        app: axum::Router,
        threads: Arc<HttpThreads>,
        header_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(
                SendfileListener::new(listener),
                app,
                &threads,
                |req| req.uri().path() != "/main",
                header_timeout,
                async move {
                    let _ = stopped.await;
                },
            )
            .await;
        });
        (addr, stop, server)
    }

    /// One GET on a kept-alive connection; the answer's body.
    async fn fetch(conn: &mut BufReader<TcpStream>, path: &str) -> String {
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            assert!(
                conn.read_line(&mut line).await.unwrap() > 0,
                "connection closed"
            );
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.unwrap();
        String::from_utf8(body).unwrap()
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("?").to_string()
    }

    #[tokio::test]
    async fn connections_are_shared_out_over_the_threads_and_each_stays_on_its_own() {
        let app = axum::Router::new().route("/", get(|| async { thread_name() }));
        let (addr, _stop, _server) = start(app).await;
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(BufReader::new(TcpStream::connect(addr).await.unwrap()));
        }
        let mut seen = Vec::new();
        for conn in &mut conns {
            let first = fetch(conn, "/").await;
            for _ in 0..5 {
                assert_eq!(
                    fetch(conn, "/").await,
                    first,
                    "a connection's requests stay on one thread"
                );
            }
            assert!(first.starts_with("lectern-http-"), "{first}");
            assert_ne!(first, thread_name(), "not the test's own runtime");
            seen.push(first);
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "lectern-http-0",
                "lectern-http-0",
                "lectern-http-1",
                "lectern-http-1"
            ]
        );
    }

    #[tokio::test]
    async fn a_closed_connection_frees_its_place_for_the_next() {
        let app = axum::Router::new().route("/", get(|| async { thread_name() }));
        let threads = Arc::new(HttpThreads::start(2).unwrap());
        let (addr, _stop, _server) = start_on(app, threads.clone()).await;
        let mut first = BufReader::new(TcpStream::connect(addr).await.unwrap());
        let a = fetch(&mut first, "/").await;
        let mut second = BufReader::new(TcpStream::connect(addr).await.unwrap());
        let b = fetch(&mut second, "/").await;
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("lectern-http-0", "lectern-http-1"),
            "one each, the first thread first"
        );
        drop(second);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while threads.threads[1].open.load(Ordering::Relaxed) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the closed connection is still counted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The second's thread is now the less busy one (on a tie the first would win).
        let mut third = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(fetch(&mut third, "/").await, b);
    }

    #[tokio::test]
    async fn requests_not_picked_run_on_the_callers_runtime_and_end_with_their_connection() {
        use std::sync::atomic::AtomicBool;
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        let app = axum::Router::new()
            .route("/", get(|| async { thread_name() }))
            .route(
                "/main",
                get(move |req: Request| async move {
                    if req.uri().query() == Some("panic") {
                        panic!("a handler bug");
                    }
                    if req.uri().query() == Some("slow") {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        done.store(true, Ordering::SeqCst);
                    }
                    thread_name()
                }),
            );
        let (addr, _stop, _server) = start(app).await;
        let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert!(fetch(&mut conn, "/").await.starts_with("lectern-http-"));
        assert_eq!(
            fetch(&mut conn, "/main").await,
            thread_name(),
            "handed to the runtime serve runs on"
        );
        let failed = fetch(&mut conn, "/main?panic").await;
        assert!(failed.contains(r#""code":"internal""#), "{failed}");
        // The same connection still serves.
        assert!(fetch(&mut conn, "/").await.starts_with("lectern-http-"));
        // A client that leaves mid-request takes its handler with it.
        let mut leaving = TcpStream::connect(addr).await.unwrap();
        leaving
            .write_all(b"GET /main?slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(leaving);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !finished.load(Ordering::SeqCst),
            "the handler ran on after its client left"
        );
    }

    #[tokio::test]
    async fn shutdown_finishes_the_request_in_hand_and_takes_no_other() {
        let app = axum::Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (addr, stop, server) = start(app).await;
        let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
        let answer = tokio::spawn(async move { fetch(&mut conn, "/slow").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        assert_eq!(answer.await.unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once drained")
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }

    #[tokio::test]
    async fn a_head_not_sent_in_time_closes_its_connection_while_timely_ones_serve_on() {
        let app = axum::Router::new().route("/", get(|| async { "ok" }));
        let limit = Duration::from_millis(500);
        let (addr, _stop, _server) =
            start_with(app, Arc::new(HttpThreads::start(2).unwrap()), limit).await;
        let started = std::time::Instant::now();
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        let closed = tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = half.read_to_end(&mut rest).await;
            (started.elapsed(), rest)
        });
        // Heads every 100 ms for three times the limit, on one kept-alive connection.
        let mut timely = BufReader::new(TcpStream::connect(addr).await.unwrap());
        while started.elapsed() < limit * 3 {
            assert_eq!(fetch(&mut timely, "/").await, "ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (after, rest) = tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("the half head's connection is closed")
            .unwrap();
        assert!(
            after >= limit && after < limit * 2,
            "closed after {after:?}"
        );
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "{rest:?}"
        );
    }

    #[tokio::test]
    async fn dropping_the_threads_ends_what_runs_on_them() {
        let threads = HttpThreads::start(2).unwrap();
        assert_eq!(threads.len(), 2);
        let forever = threads.threads[1]
            .runtime
            .spawn(std::future::pending::<()>());
        drop(threads);
        let ended = tokio::time::timeout(Duration::from_secs(5), forever)
            .await
            .expect("the task ends with its runtime");
        assert!(ended.unwrap_err().is_cancelled());
    }
}

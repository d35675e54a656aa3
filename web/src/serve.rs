//! The HTTP server loop: hyper serving HTTP/1.1 and h2c connections, as `axum::serve`
//! does, plus the one thing it lacks: a client gets `header_timeout` to send a
//! request's head, on a new connection and between requests on a kept-alive one; then
//! the connection is closed. Without it a client that sends half a request
//! (slowloris), or nothing at all, holds its connection and buffers for good. Bodies
//! (uploads), responses and upgraded connections (WebSockets) are not timed here.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

/// Serves `app` on every connection `listener` accepts until `shutdown` resolves;
/// then lets the connections finish the requests in hand and returns once all are
/// closed. Each request carries `ConnectInfo<SocketAddr>` with its peer's address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // CONNECT protocol, for WebSockets over HTTP/2.
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Nagle's algorithm would hold a response's last partial packet until the
        // client's delayed ACK on a kept-alive connection.
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    /// Serves `app`; returns the address, a sender that stops it and the server task.
    async fn start_with(
        app: axum::Router,
        header_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(listener, app, header_timeout, async move {
                let _ = stopped.await;
            })
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

    #[tokio::test]
    async fn shutdown_finishes_the_request_in_hand_and_takes_no_other() {
        let app = axum::Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (addr, stop, server) = start_with(app, Duration::from_secs(5)).await;
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
        let (addr, _stop, _server) = start_with(app, limit).await;
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
}

//! The HTTP server loop: hyper serving HTTP/1.1 (and h2c) connections from the
//! listener, as `axum::serve` does, plus the time limit it leaves off. A client gets
//! `header_timeout` to send a request's head, on a new connection and between requests
//! on a kept-alive one; then the connection is closed. Without it a client that sends
//! half a request (slowloris), or nothing at all, held its connection and its buffers
//! for good. Bodies (uploads), responses and upgraded connections (WebSockets) are not
//! timed here.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::{Service, ServiceExt};

use crate::zero_copy::SendfileListener;

/// Serves `app` on every connection `listener` accepts until `shutdown` resolves, then
/// lets the connections finish the requests in hand and returns once all are closed.
/// Each request carries `ConnectInfo<SocketAddr>` with its peer's address.
pub async fn serve<S>(mut listener: SendfileListener, app: S, header_timeout: Duration, shutdown: impl Future<Output = ()>)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    // CONNECT protocol, for WebSockets over HTTP/2.
    builder.http2().enable_connect_protocol();
    // Every connection's task holds a receiver: on shutdown the sender tells them all,
    // then waits until the last task has ended and dropped its receiver.
    let (stop_tx, stop_rx) = watch::channel(());
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
        let service = app.clone().map_request(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service)).into_owned();
        let mut stopping = stop_rx.clone();
        tokio::spawn(async move {
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

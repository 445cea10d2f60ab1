//! The accept loop: serves the router over HTTP/1.1 with the limits that keep slow or idle
//! clients from taking the service down ([`ConnectionLimits`]), and shuts down gracefully.
//!
//! `axum::serve` has no header read timeout and no connection cap, so a few hundred clients that
//! never finish their headers would each hold a connection (and a file descriptor) for as long as
//! they like. Here:
//! - **Connection cap.** A permit of a semaphore of [`ConnectionLimits::max_connections`] is taken
//!   *before* `accept`, and held until the connection closes. Past the cap, new connections wait
//!   in the kernel's listen backlog: they cost no file descriptor and no task, and they are
//!   served in order as permits come back. Closing them at once instead would turn an attack
//!   into refused connections for legitimate clients too, and would still cost an `accept` and a
//!   file descriptor per attempt; waiting is bounded by the header timeout below, since every
//!   connection holding a permit either sends its request in time or is dropped.
//! - **Header read timeout.** hyper closes a connection that has not sent a complete request head
//!   within [`ConnectionLimits::header_read_timeout`] of starting to read one: from the accept,
//!   and again after each response on a kept-alive connection, so an idle connection cannot hold
//!   a permit either.
//! - **Request body deadline.** [`crate::http::body_deadline`] reads each request body whole
//!   within [`ConnectionLimits::request_body_timeout`] of the head, or answers 408.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;

/// How long an `accept` error (out of file descriptors, say) pauses the loop, so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What one client may hold, and for how long. Checked at start-up (see `crate::config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head (request line and headers).
    pub header_read_timeout: Duration,
    /// Longest wait, from the head, for the whole request body.
    pub request_body_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets each
/// connection finish its request in flight, and returns once all are closed. Each request
/// carries the peer's [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed while the loop runs.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            // A router is always ready, and a clone is cheap (its routes are shared).
            router.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts, resets and malformed requests from clients: not the service's fault.
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_flags() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.request_body_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_connections, 512);
    }
}

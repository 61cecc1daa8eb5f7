//! The operator's HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.
//!
//! ## Readiness
//!
//! A replica is ready when
//! - it is not shutting down, and
//! - its caches are synced (it has listed what it watches from the API server), and
//! - if it is the leader, its controllers are running.
//!
//! A standby (not the leader) whose caches are synced is **ready**. Readiness of this
//! operator gates no client traffic (the Service only carries metrics); what it does gate is
//! Deployment rollouts and PodDisruptionBudgets. A standby reported unready would stall every
//! rolling update of a two-replica Deployment and make a healthy hot spare look broken. The
//! leader is unready between winning the lease and starting its controllers, and whenever its
//! controllers have stopped, which is what an alert on readiness should catch.
//!
//! If a standby runs no caches at all (controllers and their reflectors only start on the
//! leader), it should call [`Readiness::set_caches_synced`] once it has reached the API server
//! (e.g. after its first lease read), so "ready" keeps meaning "can take over".

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::{Metrics, CONTENT_TYPE};

#[derive(Debug, Default)]
struct Flags {
    caches_synced: AtomicBool,
    leader: AtomicBool,
    controllers_running: AtomicBool,
    shutting_down: AtomicBool,
}

/// Readiness flags set by the controllers and the leader elector; cheap to clone, all clones
/// share the flags.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    flags: Arc<Flags>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_caches_synced(&self, synced: bool) {
        self.flags.caches_synced.store(synced, Ordering::SeqCst);
    }

    pub fn set_leader(&self, leader: bool) {
        self.flags.leader.store(leader, Ordering::SeqCst);
    }

    pub fn set_controllers_running(&self, running: bool) {
        self.flags.controllers_running.store(running, Ordering::SeqCst);
    }

    /// Marks the replica as draining (SIGTERM received); it stays unready from then on.
    pub fn set_shutting_down(&self) {
        self.flags.shutting_down.store(true, Ordering::SeqCst);
    }

    /// `Ok(())` when ready, else the reason, as served by `/readyz`.
    pub fn check(&self) -> Result<(), &'static str> {
        let f = &self.flags;
        if f.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        if !f.caches_synced.load(Ordering::SeqCst) {
            return Err("caches not synced");
        }
        if f.leader.load(Ordering::SeqCst) && !f.controllers_running.load(Ordering::SeqCst) {
            return Err("leader but controllers not running");
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }
}

/// What the HTTP handlers read.
#[derive(Clone, Debug)]
pub struct HttpState {
    pub metrics: Metrics,
    pub readiness: Readiness,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The routes, for callers that want to nest them or serve them themselves.
pub fn router(state: HttpState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics)).with_state(state)
}

/// Binds the listener separately from serving, so that tests (and `main`, to log the real
/// port) can bind port 0 and learn the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr).await.map_err(|source| HttpError::Bind { addr, source })
}

pub async fn serve_listener(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await.map_err(HttpError::Serve)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], state.metrics.encode()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_decision() {
        let r = Readiness::new();
        assert_eq!(r.check(), Err("caches not synced"));
        r.set_caches_synced(true);
        assert_eq!(r.check(), Ok(()), "a synced standby is ready");
        r.set_leader(true);
        assert_eq!(r.check(), Err("leader but controllers not running"));
        r.set_controllers_running(true);
        assert!(r.is_ready());
        r.set_leader(false);
        r.set_controllers_running(false);
        assert!(r.is_ready(), "back to standby");
        r.clone().set_shutting_down();
        assert_eq!(r.check(), Err("shutting down"));
    }
}

//! Injected API errors for the operator's client on a real cluster.
//!
//! The fake fails requests itself ([`fake_apiserver::FakeApiServer::fail_next`]). A real API
//! server cannot be told to, so the operator's client of a real-cluster scenario answers the
//! next matching requests itself, with the same status code and `Status` body the fake sends,
//! without passing them on. The operator sees exactly what a failing server would have sent.

use std::sync::{Arc, Mutex};

use axum::http::Response;
use fake_apiserver::{Fault, FaultAction, RequestRecord};

#[derive(Clone, Default, Debug)]
pub struct ClientFaults {
    pending: Arc<Mutex<Vec<Fault>>>,
}

impl ClientFaults {
    /// Fail the next `count` requests of `verb` on `resource` (as for the fake: `configmaps`,
    /// `tenants/status`, `tenancy.platform.dev/tenants`, or `*`) with `status`.
    pub fn fail_next(&self, verb: &str, resource: &str, status: u16, count: usize) {
        let fault =
            Fault { verb: verb.into(), resource: resource.into(), action: FaultAction::Status(status), remaining: count, user: None };
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(fault);
        }
    }

    /// The injected answer for this request, if a fault matches it (counted as used).
    pub fn answer(&self, request: &RequestRecord) -> Option<Response<axum::body::Body>> {
        let mut pending = self.pending.lock().ok()?;
        let fault = pending.iter_mut().find(|f| f.matches(request))?;
        fault.remaining -= 1;
        let code = match fault.action {
            FaultAction::Status(code) => code,
            FaultAction::Hang(_) => 504,
        };
        pending.retain(|f| f.remaining > 0);
        Some(fake_apiserver::injected_error(code))
    }
}

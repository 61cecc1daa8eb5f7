//! One scenario's operator sees only that scenario's tenants, also on a shared cluster.
//!
//! On the fake every scenario has a server of its own. On a real cluster the scenarios of a test
//! binary run in parallel on one API server, each with its own operator, and every operator
//! watches Tenants cluster-wide: without this, the operators of all running scenarios reconcile
//! every scenario's tenants, each with its own configuration and its own Event counts (a scenario
//! that runs its operator without databases saw another scenario's operator create the
//! credentials Secret it meant to create itself; an Event counted by one operator was created
//! anew by the next). So the operator's client of a real-cluster scenario is given a
//! [`TenantScope`]: the lists and watches of Tenants and TenantUsers it makes answer only the
//! scenario's own tenants (the slugs it named) and the users in their namespaces. Every
//! other request passes through untouched; what the operator does with its own tenants is exactly
//! what it does on a cluster of its own.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body as ResponseBody, Bytes};
use axum::http::{header, Method, Request, Response};
use futures::StreamExt;
use kube::client::{Body, DynBody};
use serde_json::Value;

use super::faults::ClientFaults;
use super::requests::{self, RequestLog};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const API_PREFIX: &str = "/apis/tenancy.platform.dev/v1alpha1/";

/// The tenants (by slug) a scenario owns.
#[derive(Clone, Default, Debug)]
pub struct TenantScope {
    slugs: Arc<Mutex<BTreeSet<String>>>,
}

impl TenantScope {
    /// Count `slug` as one of the scenario's tenants (before creating it).
    pub fn own(&self, slug: &str) {
        if let Ok(mut slugs) = self.slugs.lock() {
            slugs.insert(slug.to_string());
        }
    }

    fn owns_tenant(&self, name: &str) -> bool {
        self.slugs.lock().is_ok_and(|slugs| slugs.contains(name))
    }

    /// `<slug>-<anything>` of an own slug: the account and environment namespaces (a TenantUser
    /// outside its account namespace is the operator's business too).
    fn owns_namespace(&self, namespace: &str) -> bool {
        self.slugs
            .lock()
            .is_ok_and(|slugs| slugs.iter().any(|slug| namespace.strip_prefix(slug.as_str()).is_some_and(|rest| rest.starts_with('-'))))
    }

    /// Whether an object of a list or watch answer is one of the scenario's.
    fn owns(&self, kind: Kind, object: &Value) -> bool {
        let meta = &object["metadata"];
        match kind {
            Kind::Tenants => meta["name"].as_str().is_some_and(|n| self.owns_tenant(n)),
            Kind::TenantUsers => meta["namespace"].as_str().is_some_and(|n| self.owns_namespace(n)),
        }
    }

    /// The layer that filters a client's answers down to the scope, records its requests in
    /// `log`, and answers those that `faults` fail itself.
    pub fn layer(&self, log: &RequestLog, faults: &ClientFaults) -> ScopeLayer {
        ScopeLayer(self.clone(), log.clone(), faults.clone())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Tenants,
    TenantUsers,
}

/// Which collection a GET reads, if it is one of the scoped ones (a list or a watch: no name).
fn collection(request: &Request<Body>) -> Option<Kind> {
    if request.method() != Method::GET {
        return None;
    }
    let rest = request.uri().path().strip_prefix(API_PREFIX)?;
    let resource = match rest.split('/').collect::<Vec<_>>()[..] {
        [resource] | ["namespaces", _, resource] => resource,
        _ => return None,
    };
    match resource {
        "tenants" => Some(Kind::Tenants),
        "tenantusers" => Some(Kind::TenantUsers),
        _ => None,
    }
}

fn is_watch(request: &Request<Body>) -> bool {
    request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

pub struct ScopeLayer(TenantScope, RequestLog, ClientFaults);

impl<S> tower::Layer<S> for ScopeLayer {
    type Service = Scoped<S>;
    fn layer(&self, inner: S) -> Scoped<S> {
        Scoped { inner, scope: self.0.clone(), log: self.1.clone(), faults: self.2.clone() }
    }
}

pub struct Scoped<S> {
    inner: S,
    scope: TenantScope,
    log: RequestLog,
    faults: ClientFaults,
}

type ScopedFuture = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

impl<S> tower::Service<Request<Body>> for Scoped<S>
where
    S: tower::Service<Request<Body>, Response = Response<Box<DynBody>>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = ScopedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> ScopedFuture {
        let kind = collection(&request);
        let watch = is_watch(&request);
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let injected = requests::parse(&method, uri.path(), uri.query().unwrap_or_default()).and_then(|r| self.faults.answer(&r));
        if let Some(response) = injected {
            self.log.record(&method, &uri, response.status().as_u16());
            return Box::pin(std::future::ready(Ok(response)));
        }
        let answer = self.inner.call(request);
        let (scope, log) = (self.scope.clone(), self.log.clone());
        Box::pin(async move {
            let response = answer.await?;
            log.record(&method, &uri, response.status().as_u16());
            let Some(kind) = kind.filter(|_| response.status().is_success()) else {
                return Ok(response.map(ResponseBody::new));
            };
            let (mut parts, body) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let body = if watch { watch_in_scope(scope, kind, body) } else { list_in_scope(&scope, kind, body).await? };
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// A list answer with the items outside the scope left out.
async fn list_in_scope(scope: &TenantScope, kind: Kind, body: Box<DynBody>) -> Result<ResponseBody, BoxError> {
    let bytes = axum::body::to_bytes(ResponseBody::new(body), usize::MAX).await?;
    let Ok(mut list) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(ResponseBody::from(bytes));
    };
    if let Some(items) = list["items"].as_array_mut() {
        items.retain(|item| scope.owns(kind, item));
    }
    Ok(ResponseBody::from(serde_json::to_vec(&list)?))
}

/// A watch answer (one JSON event per line) without the events about objects outside the scope;
/// bookmarks and errors pass.
fn watch_in_scope(scope: TenantScope, kind: Kind, body: Box<DynBody>) -> ResponseBody {
    let mut pending: Vec<u8> = Vec::new();
    let lines = ResponseBody::new(body).into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        pending.extend_from_slice(&chunk);
        let mut kept = Vec::new();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let in_scope = match serde_json::from_slice::<Value>(&line) {
                Ok(event) => {
                    !matches!(event["type"].as_str(), Some("ADDED" | "MODIFIED" | "DELETED")) || scope.owns(kind, &event["object"])
                }
                Err(_) => true,
            };
            if in_scope {
                kept.extend_from_slice(&line);
            }
        }
        Ok::<Bytes, axum::Error>(Bytes::from(kept))
    });
    ResponseBody::from_stream(lines)
}

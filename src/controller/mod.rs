//! The controllers: Tenant → namespaces, configuration, ingress, isolation and databases;
//! TenantUser → RoleBindings. Both share one [`Context`].

pub mod apply;
pub mod caches;
pub mod tenant;
mod tenant_external;
pub mod user;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
    },
    Client,
};
use rand::Rng;

use crate::{config::Config, metrics::Metrics};
pub use caches::Caches;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("waiting for {0} to be deleted")]
    WaitingForDeletion(String),
    #[error("database: {reason}: {message}")]
    Database { reason: String, message: String },
    #[error("object without a name")]
    MissingName,
}

impl Error {
    /// Short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 429 => "throttled",
            Error::Kube(_) => "kube",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
            Error::WaitingForDeletion(_) => "waiting",
            Error::Database { .. } => "database",
            Error::MissingName => "invalid",
        }
    }
}

/// What the controllers share: the client, configuration, caches and event recorder.
pub struct Context {
    pub client: Client,
    pub config: Arc<Config>,
    pub caches: Caches,
    /// Resolves once every cache holds its initial list. One shared future for all reconciles:
    /// awaiting a Store's readiness from many tasks at once left some of them unwoken.
    caches_ready: Shared<BoxFuture<'static, ()>>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, config: Arc<Config>, caches: Caches, metrics: Metrics) -> Self {
        let reporter = Reporter { controller: "tenant-operator".into(), instance: std::env::var("POD_NAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        let caches_ready = {
            let caches = caches.clone();
            async move { caches.wait_until_ready().await }.boxed().shared()
        };
        Self { client, config, caches, caches_ready, recorder, metrics, failures: Mutex::new(HashMap::new()) }
    }

    /// Wait until the caches hold their initial lists. Decisions are made against them:
    /// before that, a missing object would look deleted and be applied again.
    pub async fn caches_ready(&self) {
        self.caches_ready.clone().await;
    }

    /// Record a Kubernetes Event about `regarding`. Recording happens in the background: a
    /// reconcile does not wait for it, and a failure to record is logged, never fatal.
    pub fn event(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
        self.publish(regarding, type_, reason, note, None);
    }

    /// An Event about `regarding` that concerns one of its children (`related`). The recorder
    /// folds Events with the same regarding/related/reason into one series, so naming the
    /// child keeps "Created Ingress a" and "Created Ingress b" apart.
    pub fn child_event(&self, regarding: &ObjectReference, reason: &str, note: String, related: ObjectReference) {
        self.publish(regarding, EventType::Normal, reason, note, Some(related));
    }

    fn publish(&self, regarding: &ObjectReference, type_: EventType, reason: &str, mut note: String, related: Option<ObjectReference>) {
        note.truncate(1000);
        let event = Event { type_, reason: reason.to_string(), note: Some(note), action: reason.to_string(), secondary: related };
        let recorder = self.recorder.clone();
        let regarding = regarding.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &regarding).await {
                tracing::warn!(%error, reason, "could not record event");
            }
        });
    }

    /// Report a failed reconcile as a Warning Event on the object, without blocking the
    /// error policy (which is synchronous). Waiting for a deletion is not a failure.
    pub(crate) fn failure_event(&self, reference: ObjectReference, error: &Error) {
        if error.kind() == "waiting" {
            return;
        }
        self.event(&reference, EventType::Warning, "ReconcileFailed", error.to_string());
    }

    pub(crate) fn reset_failures(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Exponential back-off with jitter per object: 1 s, 2 s, 4 s … capped at 5 minutes.
    pub(crate) fn backoff(&self, key: &str, error: &Error) -> Action {
        if error.kind() == "waiting" {
            return Action::requeue(Duration::from_secs(2));
        }
        let attempt = match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(key.to_string()).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            Err(_) => 1,
        };
        let base = Duration::from_secs(1).saturating_mul(1u32 << attempt.saturating_sub(1).min(9)).min(Duration::from_secs(300));
        let jitter = rand::rng().random_range(0.8..1.2);
        Action::requeue(base.mul_f64(jitter))
    }
}

/// Requeue interval of a healthy object: a periodic resync that corrects drift the watches
/// might have missed. It makes no writes when nothing changed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Requeue interval while waiting for something outside the operator (a database to start).
pub const POLL: Duration = Duration::from_secs(15);

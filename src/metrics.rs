//! Prometheus metrics of the operator, served in OpenMetrics text by `/metrics`.
//!
//! One [`Metrics`] value is created at start and cloned into every controller context and the
//! HTTP server; clones share the same registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::{
    controller::ControllerKind,
    types::{SystemRole, TenantPhase},
};

/// Content type of [`Metrics::encode`]'s output. Prometheus negotiates OpenMetrics, and the
/// output is only valid OpenMetrics (counters are typed without `_total`, it ends in `# EOF`),
/// so announcing the classic `text/plain; version=0.0.4` would make counters untyped.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every Tenant phase. Phases without tenants are exported as 0 rather than left out, so
/// that dashboards and alerts see a tenant leaving a phase.
fn tenant_phases() -> Vec<&'static str> {
    TenantPhase::ALL.iter().map(|phase| phase.as_str()).collect()
}

/// Every system role a TenantUser's effective role can be, plus `None` for users that only
/// hold custom roles.
fn effective_roles() -> Vec<&'static str> {
    SystemRole::ALL.iter().map(|role| role.as_str()).chain(["None"]).collect()
}

/// Reconcile durations range from a no-op (milliseconds) to a database being provisioned
/// (tens of seconds).
const DURATION_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    effective_role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    verb: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    kind: String,
    reason: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

struct Inner {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily,
    tenants: Family<PhaseLabels, Gauge>,
    users: Family<RoleLabels, Gauge>,
    leader: Gauge,
    self_service: Gauge,
    kube_writes: Family<WriteLabels, Counter>,
    policies: Family<PolicyLabels, Gauge>,
    cached_objects: Family<KindLabels, Gauge>,
    cached_bytes: Family<KindLabels, Gauge>,
    cache_dropped: Family<DropLabels, Counter>,
    // Label values seen in earlier snapshots that are not in the fixed lists above (a phase or
    // role added later); they are reset to 0 when a snapshot no longer has them.
    extra_phases: Mutex<BTreeSet<String>>,
    extra_roles: Mutex<BTreeSet<String>>,
}

/// The operator's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tenant_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started, by controller", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_errors", "Reconciles that failed, by controller and error kind", errors.clone());
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit("reconcile_duration", "Time spent in one reconcile, by controller", Unit::Seconds, duration.clone());
        let tenants = Family::<PhaseLabels, Gauge>::default();
        registry.register("tenants", "Tenants by status phase", tenants.clone());
        let users = Family::<RoleLabels, Gauge>::default();
        registry.register("tenant_users", "TenantUsers by effective role", users.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let self_service = Gauge::default();
        registry.register(
            "self_service_policy_verified",
            "1 while the TenantUser self-service admission policy and its binding are installed as shipped (users may edit their own TenantUser), else 0",
            self_service.clone(),
        );
        let kube_writes = Family::<WriteLabels, Counter>::default();
        registry.register("kube_writes", "Write requests sent to the Kubernetes API, by verb and kind", kube_writes.clone());
        let policies = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "admission_policy_installed",
            "1 when the shipped ValidatingAdmissionPolicy and its binding are installed, 0 when either is missing, -1 while unknown",
            policies.clone(),
        );
        let cached_objects = Family::<KindLabels, Gauge>::default();
        registry.register("cached_objects", "Objects held in the children's caches, by kind", cached_objects.clone());
        let cached_bytes = Family::<KindLabels, Gauge>::default();
        registry.register_with_unit(
            "cached",
            "Bytes of the compact objects held in the children's caches, by kind",
            Unit::Bytes,
            cached_bytes.clone(),
        );
        let cache_dropped = Family::<DropLabels, Counter>::default();
        registry.register("cache_dropped", "Watched objects the caches did not keep, by kind and reason", cache_dropped.clone());

        let metrics = Self {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                errors,
                duration,
                tenants,
                users,
                leader,
                self_service,
                kube_writes,
                policies,
                cached_objects,
                cached_bytes,
                cache_dropped,
                extra_phases: Mutex::new(BTreeSet::new()),
                extra_roles: Mutex::new(BTreeSet::new()),
            }),
        };
        // Counters exist from the start, so that `rate()` and `increase()` see the first
        // reconcile as an increase from 0 (a series that appears at 1 hides it).
        for controller in ControllerKind::ALL {
            let labels = ControllerLabels { controller: controller.as_str().to_owned() };
            drop(metrics.inner.reconciles.get_or_create_owned(&labels));
            drop(metrics.inner.duration.get_or_create_owned(&labels));
        }
        // Export the gauges at 0 from the start: "no tenants yet" differs from "no data".
        metrics.set_tenants_by_phase(&BTreeMap::new());
        metrics.set_tenant_users_by_role(&BTreeMap::new());
        metrics
    }

    /// Counts a reconcile of `controller` (e.g. `"tenant"`, `"tenantuser"`) and returns a guard
    /// that records its duration when dropped, so early returns and `?` are measured too.
    #[must_use = "the duration is recorded when the guard is dropped"]
    pub fn reconcile_started(&self, controller: &str) -> ReconcileTimer {
        let labels = ControllerLabels { controller: controller.to_owned() };
        self.inner.reconciles.get_or_create(&labels).inc();
        ReconcileTimer { histogram: self.inner.duration.get_or_create_owned(&labels), start: Instant::now() }
    }

    /// Counts a failed reconcile. `error` should be a short, bounded label such as the error
    /// enum's variant name, never a message (unbounded label values explode the series count).
    pub fn reconcile_failed(&self, controller: &str, error: &str) {
        self.inner.errors.get_or_create(&ErrorLabels { controller: controller.to_owned(), error: error.to_owned() }).inc();
    }

    /// Sets `tenant_operator_tenants{phase}` from a full snapshot (phase → count). Known phases
    /// missing from the snapshot are set to 0.
    pub fn set_tenants_by_phase(&self, counts: &BTreeMap<String, i64>) {
        set_snapshot(&self.inner.tenants, &tenant_phases(), &self.inner.extra_phases, counts, |phase| PhaseLabels { phase });
    }

    /// Sets `tenant_operator_tenant_users{effective_role}` from a full snapshot; like
    /// [`Metrics::set_tenants_by_phase`].
    pub fn set_tenant_users_by_role(&self, counts: &BTreeMap<String, i64>) {
        set_snapshot(&self.inner.users, &effective_roles(), &self.inner.extra_roles, counts, |effective_role| RoleLabels {
            effective_role,
        });
    }

    pub fn set_self_service_verified(&self, verified: bool) {
        self.inner.self_service.set(i64::from(verified));
    }

    /// Sets `tenant_operator_admission_policy_installed{policy}`: `Some(true)` installed,
    /// `Some(false)` missing, `None` unknown (the check failed).
    pub fn set_admission_policy(&self, policy: &str, installed: Option<bool>) {
        let value = installed.map_or(-1, i64::from);
        self.inner.policies.get_or_create(&PolicyLabels { policy: policy.to_owned() }).set(value);
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    /// Counts a write sent to the API server (`verb`: create, patch, apply, update, delete).
    pub fn kube_write(&self, verb: &str, kind: &str) {
        self.inner.kube_writes.get_or_create(&WriteLabels { verb: verb.to_owned(), kind: kind.to_owned() }).inc();
    }

    /// Sets `tenant_operator_cached_objects{kind}` and `tenant_operator_cached_bytes{kind}`.
    pub fn set_cached(&self, kind: &str, objects: i64, bytes: i64) {
        let labels = KindLabels { kind: kind.to_owned() };
        self.inner.cached_objects.get_or_create(&labels).set(objects);
        self.inner.cached_bytes.get_or_create(&labels).set(bytes);
    }

    /// Counts a watched object the caches did not keep (`reason`: a short, fixed word).
    pub fn cache_dropped(&self, kind: &str, reason: &str) {
        self.inner.cache_dropped.get_or_create(&DropLabels { kind: kind.to_owned(), reason: reason.to_owned() }).inc();
    }

    /// The registry in OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here could only come from a metric's
        // own encoder, and a partial scrape is still better than none.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }
}

fn set_snapshot<L>(
    family: &Family<L, Gauge>,
    known: &[&str],
    extra: &Mutex<BTreeSet<String>>,
    counts: &BTreeMap<String, i64>,
    labels: impl Fn(String) -> L,
) where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
{
    // A poisoned lock only means another thread panicked mid-update of a plain set of strings;
    // the set is still usable.
    let mut extra = extra.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, count) in counts {
        if !known.contains(&key.as_str()) {
            extra.insert(key.clone());
        }
        family.get_or_create(&labels(key.clone())).set(*count);
    }
    let absent = known.iter().map(|k| (*k).to_owned()).chain(extra.iter().cloned()).filter(|k| !counts.contains_key(k));
    for key in absent {
        family.get_or_create(&labels(key)).set(0);
    }
}

/// Records a reconcile's duration when dropped; see [`Metrics::reconcile_started`].
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn names_follow_the_contract() {
        let m = Metrics::new();
        drop(m.reconcile_started("tenant"));
        m.reconcile_failed("tenant", "Kube");
        m.kube_write("apply", "Namespace");
        m.set_leader(true);
        let text = m.encode();
        assert!(text.contains("tenant_operator_reconciles_total{controller=\"tenant\"} 1"));
        assert!(text.contains("tenant_operator_reconcile_errors_total{controller=\"tenant\",error=\"Kube\"} 1"));
        assert!(text.contains("tenant_operator_reconcile_duration_seconds_count{controller=\"tenant\"} 1"));
        assert!(text.contains("# UNIT tenant_operator_reconcile_duration_seconds seconds"));
        assert!(text.contains("tenant_operator_leader 1"));
        assert!(text.contains("tenant_operator_kube_writes_total{verb=\"apply\",kind=\"Namespace\"} 1"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn every_phase_is_exported_and_absent_phases_reset_to_zero() {
        let m = Metrics::new();
        for phase in tenant_phases() {
            let text = m.encode();
            let prefix = format!("tenant_operator_tenants{{phase=\"{phase}\"}}");
            assert_eq!(line(&text, &prefix), Some(format!("{prefix} 0").as_str()));
        }
        m.set_tenants_by_phase(&BTreeMap::from([("Ready".to_owned(), 3), ("Failed".to_owned(), 1), ("Migrating".to_owned(), 2)]));
        let text = m.encode();
        assert!(text.contains("tenant_operator_tenants{phase=\"Ready\"} 3"));
        assert!(text.contains("tenant_operator_tenants{phase=\"Failed\"} 1"));
        assert!(text.contains("tenant_operator_tenants{phase=\"Migrating\"} 2"));

        m.set_tenants_by_phase(&BTreeMap::from([("Ready".to_owned(), 4)]));
        let text = m.encode();
        assert!(text.contains("tenant_operator_tenants{phase=\"Ready\"} 4"));
        assert!(text.contains("tenant_operator_tenants{phase=\"Failed\"} 0"));
        assert!(text.contains("tenant_operator_tenants{phase=\"Migrating\"} 0"));
    }

    #[test]
    fn user_roles_reset_like_phases() {
        let m = Metrics::new();
        m.set_tenant_users_by_role(&BTreeMap::from([("Designer".to_owned(), 2)]));
        m.set_tenant_users_by_role(&BTreeMap::from([("Agent".to_owned(), 1)]));
        let text = m.encode();
        assert!(text.contains("tenant_operator_tenant_users{effective_role=\"Designer\"} 0"));
        assert!(text.contains("tenant_operator_tenant_users{effective_role=\"Agent\"} 1"));
    }

    #[test]
    fn clones_share_the_registry() {
        let m = Metrics::new();
        let c = m.clone();
        {
            let _t = c.reconcile_started("tenantuser");
        }
        assert!(m.encode().contains("tenant_operator_reconciles_total{controller=\"tenantuser\"} 1"));
    }
}

//! The fleet: N Tenants, what `tenant-operator render` makes of them, the direct-apply
//! baseline, and the pre-population of a store as the operator would have left it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use fake_apiserver::FakeApiServer;
use futures::{stream, StreamExt};
use kube::{
    api::{DynamicObject, Patch, PatchParams, PostParams},
    Api, Client,
};
use serde_json::{json, Value};
use tenant_operator::{
    config::Config,
    desired::{
        applied::{applied_form, is_subset},
        ChildKind, DesiredObject,
    },
    render::{render_objects, Resources},
    types::Tenant,
};

pub const TENANT_API: &str = "tenancy.platform.dev/v1alpha1";
/// The field manager of the direct-apply baseline.
pub const DIRECT_MANAGER: &str = "bench-direct-apply";
/// Tenant creates in flight at once (like a GitOps tool applying a directory).
pub const CREATE_CONCURRENCY: usize = 64;

pub fn slug(i: usize) -> String {
    format!("bench-{i:05}")
}

/// The tenant: 3 environments, 2 applications, a quota, no database.
pub fn tenant(slug: &str) -> Result<Tenant, String> {
    serde_json::from_value(json!({
        "apiVersion": TENANT_API,
        "kind": "Tenant",
        "metadata": {"name": slug},
        "spec": {
            "displayName": format!("Bench tenant {slug}"),
            "cluster": "uk",
            "environments": ["dev", "staging", "prod"],
            "applications": ["xconsole", "u-assist"],
            "database": {"provider": "none"},
            "quota": {"cpu": "8", "memory": "16Gi", "pods": 50},
        },
    }))
    .map_err(|e| format!("bench tenant {slug}: {e}"))
}

pub fn tenants(n: usize) -> Result<Vec<Tenant>, String> {
    (0..n).map(|i| tenant(&slug(i))).collect()
}

/// Everything `tenant-operator render` prints for these Tenants, namespaces first (so that a
/// sequential client can create the namespaced objects in them).
pub fn rendered(tenants: &[Tenant], config: &Config) -> Result<Vec<DesiredObject>, String> {
    let resources = Resources { tenants: tenants.to_vec(), users: Vec::new() };
    let mut objects = render_objects(&resources, config).map_err(|e| format!("render: {e}"))?;
    objects.sort_by_key(|o| o.namespace.is_some());
    Ok(objects)
}

/// Rendered objects per kind, per tenant (for the "minimum writes" line).
pub fn per_kind(objects: &[DesiredObject], n: usize) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for o in objects {
        *out.entry(o.kind.name()).or_insert(0.0) += 1.0 / n as f64;
    }
    out
}

pub fn is_ready(tenant: &Value) -> bool {
    tenant.pointer("/status/phase").and_then(Value::as_str) == Some("Ready")
        && tenant.pointer("/status/observedGeneration").is_some()
        && tenant.pointer("/status/observedGeneration") == tenant.pointer("/metadata/generation")
}

pub fn ready_count(fake: &FakeApiServer) -> usize {
    fake.count_objects(TENANT_API, "Tenant", is_ready)
}

fn api_for(client: &Client, object: &DesiredObject) -> Api<DynamicObject> {
    let resource = object.kind.api_resource();
    match object.namespace.as_deref() {
        Some(ns) if object.kind.is_namespaced() => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// The baseline: one client server-side applies every rendered object, one request at a
/// time. Returns its duration.
pub async fn direct_apply(client: &Client, objects: &[DesiredObject]) -> Result<Duration, String> {
    let params = PatchParams::apply(DIRECT_MANAGER).force();
    let started = Instant::now();
    for object in objects {
        api_for(client, object)
            .patch(&object.name, &params, &Patch::Apply(&object.object))
            .await
            .map_err(|e| format!("direct apply of {}: {e}", object.describe()))?;
    }
    Ok(started.elapsed())
}

/// Create the Tenants, `CREATE_CONCURRENCY` at a time.
pub async fn create_tenants(client: &Client, tenants: &[Tenant]) -> Result<(), String> {
    let api = Api::<Tenant>::all(client.clone());
    let results: Vec<Result<(), String>> = stream::iter(tenants)
        .map(|t| {
            let api = api.clone();
            async move {
                let name = t.metadata.name.clone().unwrap_or_default();
                api.create(&PostParams::default(), t).await.map(|_| ()).map_err(|e| format!("create Tenant {name}: {e}"))
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

// ------------------------------------------------------------------------------------------
// What the operator applies: the bench fills a store with the operator's own `applied_form`
// of each rendered object, so a resync over it should write nothing. `stored_as_applied`
// compares that form with what the operator really wrote in the same run (field manager and
// fields), and the bench refuses to pre-populate when they differ.

/// The operator's field manager (`naming::FIELD_MANAGER`).
pub const OPERATOR_MANAGER: &str = "tenant-operator";

fn uid_of(fake: &FakeApiServer, slug: &str) -> Option<String> {
    fake.object(TENANT_API, "Tenant", "", slug)?.pointer("/metadata/uid")?.as_str().map(String::from)
}

fn stored(fake: &FakeApiServer, object: &DesiredObject) -> Option<Value> {
    let resource = object.kind.api_resource();
    fake.object(&resource.api_version, &resource.kind, object.namespace.as_deref().unwrap_or_default(), &object.name)
}

/// How many of the rendered objects of these tenants are stored exactly as `applied_form`
/// predicts (what the operator applied, with its field manager), out of how many.
pub fn stored_as_applied(fake: &FakeApiServer, tenants: &[Tenant], config: &Config) -> Result<(usize, usize), String> {
    let mut matching = 0;
    let mut total = 0;
    for tenant in tenants {
        let slug = tenant.metadata.name.clone().unwrap_or_default();
        let uid = uid_of(fake, &slug).ok_or_else(|| format!("Tenant {slug} is not stored"))?;
        for object in rendered(std::slice::from_ref(tenant), config)? {
            total += 1;
            let Some(have) = stored(fake, &object) else { continue };
            let by_operator = have
                .pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|e| e.get("manager").and_then(Value::as_str) == Some(OPERATOR_MANAGER)));
            if by_operator && is_subset(&applied_form(&object, &uid), &have) {
                matching += 1;
            }
        }
    }
    Ok((matching, total))
}

/// Store every rendered object of these (already created) Tenants as the operator would have
/// applied it, under its field manager. Returns how many objects were stored.
pub fn prepopulate(fake: &FakeApiServer, tenants: &[Tenant], config: &Config) -> Result<usize, String> {
    let mut objects = Vec::new();
    for tenant in tenants {
        let slug = tenant.metadata.name.clone().unwrap_or_default();
        let uid = uid_of(fake, &slug).ok_or_else(|| format!("Tenant {slug} is not stored"))?;
        for object in rendered(std::slice::from_ref(tenant), config)? {
            objects.push(applied_form(&object, &uid));
        }
    }
    // Namespaces first, as the operator creates them.
    objects.sort_by_key(|o| o.pointer("/metadata/namespace").is_some());
    fake.insert_objects(&objects, OPERATOR_MANAGER)
}

/// Objects in the operator's caches: its children (every kind it watches, with the tenant
/// label), assignable ClusterRoles, Tenants and TenantUsers.
pub fn cached_objects(fake: &FakeApiServer) -> usize {
    const LABEL_TENANT: &str = "tenancy.platform.dev/tenant";
    let labelled = |label: &'static str, value: Option<&'static str>| {
        move |o: &Value| {
            o.pointer("/metadata/labels").and_then(|l| l.get(label)).and_then(Value::as_str).is_some_and(|v| value.is_none_or(|x| x == v))
        }
    };
    let mut kinds: Vec<ChildKind> = ChildKind::TENANT_CHILDREN.to_vec();
    kinds.push(ChildKind::RoleBinding);
    let children: usize = kinds
        .iter()
        .map(|k| {
            let r = k.api_resource();
            fake.count_objects(&r.api_version, &r.kind, labelled(LABEL_TENANT, None))
        })
        .sum();
    let roles = {
        let r = ChildKind::ClusterRole.api_resource();
        fake.count_objects(&r.api_version, &r.kind, labelled("tenancy.platform.dev/assignable", Some("true")))
    };
    let own = |kind: &str| fake.count_objects(TENANT_API, kind, |_| true);
    children + roles + own("Tenant") + own("TenantUser")
}

/// `value` with `from` replaced by `to` in every string (keys included).
fn replace_strings(value: &Value, from: &str, to: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(items) => Value::Array(items.iter().map(|v| replace_strings(v, from, to)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.replace(from, to), replace_strings(v, from, to))).collect()),
        other => other.clone(),
    }
}

/// `value` without the `lastTransitionTime` of its conditions (when a condition last changed
/// differs from tenant to tenant, and the operator keeps whatever it finds).
fn without_times(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(k, _)| *k != "lastTransitionTime").map(|(k, v)| (k.clone(), without_times(v))).collect())
        }
        other => other.clone(),
    }
}

/// A Tenant the operator converged (its finalizers and status), to give other Tenants of the
/// same spec the finalizers and status the operator would have written for them: the
/// operator's status is its own business, so the bench learns it instead of computing it.
pub struct TenantTemplate {
    slug: String,
    finalizers: Value,
    status: Value,
}

impl TenantTemplate {
    pub fn learn(fake: &FakeApiServer, slug: &str) -> Result<Self, String> {
        let stored = fake.object(TENANT_API, "Tenant", "", slug).ok_or_else(|| format!("Tenant {slug} is not stored"))?;
        if !is_ready(&stored) {
            return Err(format!("Tenant {slug} is not Ready"));
        }
        Ok(Self {
            slug: slug.to_string(),
            finalizers: stored.pointer("/metadata/finalizers").cloned().unwrap_or(Value::Null),
            status: stored.get("status").cloned().unwrap_or(Value::Null),
        })
    }

    /// The status the operator would write for `slug`.
    pub fn status_for(&self, slug: &str) -> Value {
        replace_strings(&self.status, &self.slug, slug)
    }

    /// How many of these (converged) Tenants have the status the template predicts for them,
    /// condition times aside.
    pub fn check(&self, fake: &FakeApiServer, slugs: &[String]) -> usize {
        slugs
            .iter()
            .filter(|slug| {
                fake.object(TENANT_API, "Tenant", "", slug)
                    .and_then(|t| t.get("status").cloned())
                    .is_some_and(|status| without_times(&status) == without_times(&self.status_for(slug)))
            })
            .count()
    }

    /// The Tenant as created with the operator's finalizers already on it.
    pub fn with_finalizers(&self, tenant: &Tenant) -> Result<Tenant, String> {
        let mut value = serde_json::to_value(tenant).map_err(|e| e.to_string())?;
        value["metadata"]["finalizers"] = self.finalizers.clone();
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// The status documents (for `FakeApiServer::insert_status`) of these Tenants.
    pub fn statuses(&self, tenants: &[Tenant]) -> Vec<Value> {
        tenants
            .iter()
            .filter_map(|t| t.metadata.name.as_deref())
            .map(|slug| json!({"apiVersion": TENANT_API, "kind": "Tenant", "metadata": {"name": slug}, "status": self.status_for(slug)}))
            .collect()
    }
}

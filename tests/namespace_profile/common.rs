//! What the namespace profile scenarios share: the rules' names, the hostile tenant and its
//! people, a pod that Pod Security `restricted` admits.

use k8s_openapi::api::core::v1::Pod;
use kube::{api::DynamicObject, core::ApiResource, Api, Client};
use serde_json::{json, Value};
use tenant_operator::types::{Conditions, TenantUser};

use crate::support::fixtures::{ready, tenant, user};
use crate::support::scenario::Scenario;

pub const OBJECTS_POLICY: &str = "tenancy-operator-objects.tenancy.platform.dev";
pub const PULL_POLICY: &str = "tenancy-image-pull-policy.tenancy.platform.dev";
pub const SERVICES_POLICY: &str = "tenancy-service-types.tenancy.platform.dev";
pub const RESTRICTED: &str = "violates PodSecurity \"restricted:latest\"";
/// Pod Security refuses privileged containers; an API server started without
/// `--allow-privileged` refuses them before, in validation (a bare test control plane).
pub const PRIVILEGED: [&str; 2] = [
    "privileged (container \"app\" must not set securityContext.privileged=true)",
    "securityContext.privileged: Forbidden: disallowed by cluster policy",
];

pub fn user_ready(u: &TenantUser) -> bool {
    u.status.as_ref().is_some_and(|s| s.is_true("Ready") && s.observed_generation == u.metadata.generation)
}

/// The API server's refusal (403 or 422), or a panic naming what was expected.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => status.message.clone(),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// A tenant in dev and staging with a statefulset database and one application, ready; its
/// Account Admin and Designer, bound. Returns (slug, [("admin", client), ("designer", client)]).
pub async fn hostile_tenant(s: &Scenario, prefix: &str) -> (String, Vec<(&'static str, Client)>) {
    let slug = s.slug(prefix);
    s.create_tenant(&tenant(
        &slug,
        json!({"displayName": "Hostile Inc", "cluster": "uk", "environments": ["dev", "staging"], "applications": ["xconsole"],
               "database": {"provider": "statefulset"}, "deletionPolicy": "Delete"}),
    ))
    .await;
    if s.fake().is_some() {
        s.mark_statefulsets_ready(&slug).await;
        s.wait_tenant(&slug, ready).await;
    } else {
        // No kubelet and no ingress controller on a bare control plane: the Tenant never gets
        // Ready there. What the attacks need is there once the StatefulSet controller created
        // the database pod (through Pod Security, the policies and the quota) and its volume.
        for env in ["dev", "staging"] {
            let ns = format!("{slug}-{env}");
            let pods: Api<Pod> = Api::namespaced(s.client(), &ns);
            let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(s.client(), &ns);
            let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> = Api::namespaced(s.client(), &ns);
            s.wait_for(&format!("the database pod, volume and Ingress in {ns}"), || async {
                pods.get_opt(&format!("{slug}-db-0")).await.is_ok_and(|p| p.is_some())
                    && claims.get_opt(&format!("data-{slug}-db-0")).await.is_ok_and(|c| c.is_some())
                    && ingresses.get_opt("xconsole").await.is_ok_and(|i| i.is_some())
            })
            .await;
        }
    }
    // As the README says: users once the account namespace takes them (its quota counted).
    s.wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|st| st.is_true("NamespacesReady"))).await;
    let mut people = Vec::new();
    for (name, role) in [("admin", "AccountAdmin"), ("designer", "Designer")] {
        let email = format!("{name}@{slug}.example");
        s.create_user(&user(name, &slug, &email, name, &[role], &[])).await;
        s.wait_user(&slug, name, user_ready).await;
        let client = s.client_as_person(&email).await;
        // Bindings are effective once the RBAC caches of a real server caught up.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &format!("{slug}-staging"));
        s.wait_for(&format!("{name}'s access"), || async { pods.list(&Default::default()).await.is_ok() }).await;
        people.push((name, client));
    }
    (slug, people)
}

/// A pod that Pod Security `restricted` admits, with resources and `imagePullPolicy: Always`.
pub fn restricted_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": "registry.example/app:1.0", "imagePullPolicy": "Always",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi", "ephemeral-storage": "10Mi"},
                              "limits": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "100Mi"}},
            }],
        },
    })
}

/// `base` with the JSON merge patch `change` applied (RFC 7386).
pub fn merged(mut base: Value, change: &Value) -> Value {
    match (base.as_object_mut(), change.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    let current = target.remove(key).unwrap_or(Value::Null);
                    target.insert(key.clone(), merged(current, value));
                }
            }
            base
        }
        _ => change.clone(),
    }
}

pub fn dynamic(client: &Client, api_version: &str, kind: &str, plural: &str, namespace: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &ar)
}

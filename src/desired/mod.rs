//! Desired state: pure functions from a Tenant / TenantUser and the configuration to the
//! objects the operator wants on the cluster. No client calls here; applying is done by the
//! controllers, printing by `render`.

pub mod applied;
pub mod rbac;
pub mod tenant;
pub mod user;

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret, Service},
    networking::v1::{Ingress, NetworkPolicy},
    rbac::v1::{ClusterRole, Role, RoleBinding},
};
use kube::{
    core::{ApiResource, GroupVersionKind},
    Resource,
};
use serde::Serialize;

use crate::naming::{LABEL_ENVIRONMENT, LABEL_MANAGED_BY, LABEL_TENANT, MANAGED_BY};
use crate::types::Environment;

/// The kinds of object the operator creates. Each has a label-narrowed cache in the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    Namespace,
    ConfigMap,
    Secret,
    Service,
    StatefulSet,
    PersistentVolumeClaim,
    Ingress,
    NetworkPolicy,
    ResourceQuota,
    LimitRange,
    Role,
    RoleBinding,
    ClusterRole,
    CnpgCluster,
    /// A Gateway API `HTTPRoute`: an application's route in a `routing: gateway` region.
    HttpRoute,
}

impl ChildKind {
    /// Kinds a Tenant owns (Roles and RoleBindings belong to TenantUsers, ClusterRoles to the
    /// install).
    pub const TENANT_CHILDREN: [ChildKind; 12] = [
        ChildKind::Namespace,
        ChildKind::ConfigMap,
        ChildKind::Secret,
        ChildKind::Service,
        ChildKind::StatefulSet,
        ChildKind::PersistentVolumeClaim,
        ChildKind::Ingress,
        ChildKind::NetworkPolicy,
        ChildKind::ResourceQuota,
        ChildKind::LimitRange,
        ChildKind::CnpgCluster,
        ChildKind::HttpRoute,
    ];

    /// The kinds that route an application's hostname: one of them per application and
    /// environment, depending on the region's `routing`.
    pub fn is_route(self) -> bool {
        matches!(self, ChildKind::Ingress | ChildKind::HttpRoute)
    }

    pub fn api_resource(self) -> ApiResource {
        match self {
            ChildKind::Namespace => ApiResource::erase::<Namespace>(&()),
            ChildKind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            ChildKind::Secret => ApiResource::erase::<Secret>(&()),
            ChildKind::Service => ApiResource::erase::<Service>(&()),
            ChildKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            ChildKind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
            ChildKind::Ingress => ApiResource::erase::<Ingress>(&()),
            ChildKind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            ChildKind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
            ChildKind::LimitRange => ApiResource::erase::<LimitRange>(&()),
            ChildKind::Role => ApiResource::erase::<Role>(&()),
            ChildKind::RoleBinding => ApiResource::erase::<RoleBinding>(&()),
            ChildKind::ClusterRole => ApiResource::erase::<ClusterRole>(&()),
            ChildKind::CnpgCluster => {
                ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"), "clusters")
            }
            ChildKind::HttpRoute => ApiResource::erase::<crate::gateway::HTTPRoute>(&()),
        }
    }

    pub fn is_namespaced(self) -> bool {
        !matches!(self, ChildKind::Namespace | ChildKind::ClusterRole)
    }

    pub fn name(self) -> &'static str {
        match self {
            ChildKind::Namespace => "Namespace",
            ChildKind::ConfigMap => "ConfigMap",
            ChildKind::Secret => "Secret",
            ChildKind::Service => "Service",
            ChildKind::StatefulSet => "StatefulSet",
            ChildKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            ChildKind::Ingress => "Ingress",
            ChildKind::NetworkPolicy => "NetworkPolicy",
            ChildKind::ResourceQuota => "ResourceQuota",
            ChildKind::LimitRange => "LimitRange",
            ChildKind::Role => "Role",
            ChildKind::RoleBinding => "RoleBinding",
            ChildKind::ClusterRole => "ClusterRole",
            ChildKind::CnpgCluster => "Cluster",
            ChildKind::HttpRoute => "HTTPRoute",
        }
    }
}

/// One object the operator wants to exist, as the JSON it server-side applies.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub kind: ChildKind,
    pub namespace: Option<String>,
    pub name: String,
    pub object: serde_json::Value,
}

impl DesiredObject {
    /// Wrap a typed object; `apiVersion` and `kind` are filled in from its type.
    pub fn from_typed<K>(kind: ChildKind, object: &K) -> Result<Self, serde_json::Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let meta = object.meta();
        let mut value = serde_json::to_value(object)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), K::api_version(&()).into());
            map.insert("kind".into(), K::kind(&()).into());
        }
        Ok(Self { kind, namespace: meta.namespace.clone(), name: meta.name.clone().unwrap_or_default(), object: value })
    }

    /// A reference to this object, for Events that concern it.
    pub fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        child_reference(self.kind, self.namespace.as_deref(), &self.name)
    }

    /// `Kind namespace/name`, for logs, events and errors.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.name(), self.name),
            None => format!("{} {}", self.kind.name(), self.name),
        }
    }
}

/// A reference to a child of a kind the operator manages.
pub fn child_reference(kind: ChildKind, namespace: Option<&str>, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let resource = kind.api_resource();
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(resource.api_version),
        kind: Some(resource.kind),
        name: Some(name.to_string()),
        namespace: namespace.filter(|_| kind.is_namespaced()).map(str::to_string),
        ..Default::default()
    }
}

/// Labels every child of a tenant carries, so caches can be narrowed by label and
/// `kubectl get all -l tenancy.platform.dev/tenant=<slug> -A` finds them.
pub fn tenant_labels(slug: &str, env: Option<Environment>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(LABEL_TENANT.to_string(), slug.to_string()), (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())]);
    if let Some(env) = env {
        labels.insert(LABEL_ENVIRONMENT.to_string(), env.as_str().to_string());
    }
    labels
}

//! The resource types the fake serves (built-ins and CRDs), discovery documents and the
//! per-kind schema knowledge used by merge logic (which lists are associative).

use std::sync::Arc;

use kube::core::cel::{compile_schema, CompiledSchema};
use serde_json::{json, Value};

use super::errors::{ApiError, ApiResult};

/// How `metadata.name` is validated for a kind (as the real server does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds, custom resources).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Label1035,
    /// Any path segment (RBAC objects, e.g. `tenancy:viewer`).
    PathSegment,
}

/// How a list is merged (server-side apply and strategic merge patch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status: bool,
    /// Other subresources served (e.g. `finalize` for namespaces).
    pub extra_subresources: Vec<String>,
    /// Maintains `metadata.generation`.
    pub generation: bool,
    /// `openAPIV3Schema` for custom resources.
    pub schema: Option<Value>,
    /// Its CEL rules, compiled once when the CRD is installed (as the real server does)
    /// rather than on every write.
    pub cel: Option<Arc<CompiledSchema>>,
    /// Name of the CRD that defines it.
    pub crd: Option<String>,
    pub name_rule: NameRule,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for the core group), as in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_crd(&self) -> bool {
        self.crd.is_some()
    }

    /// Whether server-side apply / strategic merge treat `path` (field names, list items
    /// transparent) as an associative list.
    pub fn list_type(&self, path: &[String]) -> ListType {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["metadata", "finalizers"] => return ListType::Set,
            ["metadata", "ownerReferences"] => return ListType::Map(vec!["uid".into()]),
            _ => {}
        }
        if let Some(schema) = &self.schema {
            return crd_list_type(schema, &p);
        }
        builtin_list_type(&self.kind, &p)
    }
}

fn crd_list_type(schema: &Value, path: &[&str]) -> ListType {
    let mut node = schema;
    for seg in path {
        // descend through array items transparently
        while node.get("type").and_then(Value::as_str) == Some("array") {
            match node.get("items") {
                Some(items) => node = items,
                None => return ListType::Atomic,
            }
        }
        match node.get("properties").and_then(|p| p.get(*seg)) {
            Some(n) => node = n,
            None => match node.get("additionalProperties") {
                Some(n) if n.is_object() => node = n,
                _ => return ListType::Atomic,
            },
        }
    }
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            node.get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    }
}

/// Patch-merge keys of the built-in fields the operator may touch. Anything not listed is atomic.
fn builtin_list_type(kind: &str, path: &[&str]) -> ListType {
    let map = |keys: &[&str]| ListType::Map(keys.iter().map(|k| k.to_string()).collect());
    // Pod template inside workload kinds
    let pod_spec: &[&str] = match kind {
        "StatefulSet" | "Deployment" | "DaemonSet" | "ReplicaSet" | "Job" => &["spec", "template", "spec"],
        "Pod" => &["spec"],
        _ => &[],
    };
    if !pod_spec.is_empty() && path.len() > pod_spec.len() && &path[..pod_spec.len()] == pod_spec {
        let rest = &path[pod_spec.len()..];
        return match rest {
            ["containers"] | ["initContainers"] | ["ephemeralContainers"] | ["volumes"] | ["imagePullSecrets"] => map(&["name"]),
            ["containers" | "initContainers", "ports"] => map(&["containerPort", "protocol"]),
            ["containers" | "initContainers", "env"] => map(&["name"]),
            ["containers" | "initContainers", "volumeMounts"] => map(&["mountPath"]),
            ["containers" | "initContainers", "volumeDevices"] => map(&["devicePath"]),
            ["hostAliases"] => map(&["ip"]),
            ["topologySpreadConstraints"] => map(&["topologyKey", "whenUnsatisfiable"]),
            _ => ListType::Atomic,
        };
    }
    match (kind, path) {
        ("Service", ["spec", "ports"]) => map(&["port", "protocol"]),
        ("Namespace", ["spec", "finalizers"]) => ListType::Set,
        (_, ["status", "conditions"]) => map(&["type"]),
        _ => ListType::Atomic,
    }
}

fn builtin(group: &str, kind: &str, plural: &str, namespaced: bool, short: &[&str]) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status: false,
        extra_subresources: vec![],
        generation: false,
        schema: None,
        cel: None,
        crd: None,
        name_rule: NameRule::Subdomain,
    }
}

/// The built-in kinds the fake serves.
pub fn builtins() -> Vec<ResourceType> {
    let mut v = Vec::new();
    let mut ns = builtin("", "Namespace", "namespaces", false, &["ns"]);
    ns.status = true;
    ns.extra_subresources = vec!["finalize".into()];
    ns.name_rule = NameRule::Label;
    v.push(ns);
    v.push(builtin("", "ConfigMap", "configmaps", true, &["cm"]));
    v.push(builtin("", "Secret", "secrets", true, &[]));
    let mut svc = builtin("", "Service", "services", true, &["svc"]);
    svc.status = true;
    svc.categories = vec!["all".into()];
    svc.name_rule = NameRule::Label1035;
    v.push(svc);
    let mut pvc = builtin("", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"]);
    pvc.status = true;
    v.push(pvc);
    v.push(builtin("", "Event", "events", true, &["ev"]));
    let mut rq = builtin("", "ResourceQuota", "resourcequotas", true, &["quota"]);
    rq.status = true;
    v.push(rq);
    v.push(builtin("", "LimitRange", "limitranges", true, &["limits"]));
    v.push(builtin("", "ServiceAccount", "serviceaccounts", true, &["sa"]));
    let mut pod = builtin("", "Pod", "pods", true, &["po"]);
    pod.status = true;
    pod.categories = vec!["all".into()];
    v.push(pod);
    v.push(builtin("events.k8s.io", "Event", "events", true, &["ev"]));
    let mut sts = builtin("apps", "StatefulSet", "statefulsets", true, &["sts"]);
    sts.status = true;
    sts.generation = true;
    sts.categories = vec!["all".into()];
    v.push(sts);
    let mut ing = builtin("networking.k8s.io", "Ingress", "ingresses", true, &["ing"]);
    ing.status = true;
    ing.generation = true;
    v.push(ing);
    let mut np = builtin("networking.k8s.io", "NetworkPolicy", "networkpolicies", true, &["netpol"]);
    np.generation = true;
    v.push(np);
    for (kind, plural, namespaced) in [
        ("Role", "roles", true),
        ("RoleBinding", "rolebindings", true),
        ("ClusterRole", "clusterroles", false),
        ("ClusterRoleBinding", "clusterrolebindings", false),
    ] {
        let mut r = builtin("rbac.authorization.k8s.io", kind, plural, namespaced, &[]);
        r.name_rule = NameRule::PathSegment;
        v.push(r);
    }
    v.push(builtin("coordination.k8s.io", "Lease", "leases", true, &[]));
    let mut vap = builtin("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", false, &[]);
    vap.status = true;
    vap.generation = true;
    v.push(vap);
    v.push(builtin("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", false, &[]));
    let mut crd = builtin("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"]);
    crd.status = true;
    crd.generation = true;
    crd.categories = vec!["api-extensions".into()];
    v.push(crd);
    v
}

/// Resource types defined by a CRD object (one per served version).
pub fn from_crd(crd: &Value) -> ApiResult<Vec<ResourceType>> {
    let bad = |m: &str| ApiError::bad_request(format!("invalid CustomResourceDefinition: {m}"));
    let spec = crd.get("spec").ok_or_else(|| bad("spec missing"))?;
    let group = spec.get("group").and_then(Value::as_str).ok_or_else(|| bad("spec.group missing"))?;
    let names = spec.get("names").ok_or_else(|| bad("spec.names missing"))?;
    let plural = names.get("plural").and_then(Value::as_str).ok_or_else(|| bad("spec.names.plural missing"))?;
    let kind = names.get("kind").and_then(Value::as_str).ok_or_else(|| bad("spec.names.kind missing"))?;
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let scope = spec.get("scope").and_then(Value::as_str).unwrap_or("Namespaced");
    let versions = spec.get("versions").and_then(Value::as_array).ok_or_else(|| bad("spec.versions missing"))?;
    let crd_name = format!("{plural}.{group}");
    let mut out = Vec::new();
    for ver in versions {
        if ver.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = ver.get("name").and_then(Value::as_str).ok_or_else(|| bad("version name missing"))?;
        let schema = ver.pointer("/schema/openAPIV3Schema").cloned();
        out.push(ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names.get("singular").and_then(Value::as_str).unwrap_or(&kind.to_lowercase()).to_string(),
            namespaced: scope == "Namespaced",
            short_names: strs(names.get("shortNames")),
            categories: strs(names.get("categories")),
            status: ver.pointer("/subresources/status").is_some(),
            extra_subresources: vec![],
            generation: true,
            cel: schema.as_ref().map(|s| Arc::new(compile_schema(s))),
            schema,
            crd: Some(crd_name.clone()),
            name_rule: NameRule::Subdomain,
        });
    }
    Ok(out)
}

/// All resource types, searchable.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub types: Vec<Arc<ResourceType>>,
}

impl Registry {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceType>> {
        self.types.iter().find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Any version of `group/plural` (storage is shared across versions).
    pub fn find_any(&self, group: &str, plural: &str) -> Option<&Arc<ResourceType>> {
        self.types.iter().find(|t| t.group == group && t.plural == plural)
    }

    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&Arc<ResourceType>> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types.iter().find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    pub fn remove_crd(&mut self, crd_name: &str) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd_name));
    }

    pub fn add(&mut self, types: Vec<ResourceType>) {
        for t in types {
            self.types.retain(|x| !(x.group == t.group && x.version == t.version && x.plural == t.plural));
            self.types.push(Arc::new(t));
        }
    }

    fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) => {
                    if !vs.contains(&t.version) {
                        vs.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out
    }

    pub fn api_versions(&self, addr: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]
        })
    }

    fn group_doc(group: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
        json!({ "name": group, "versions": vs, "preferredVersion": vs[0].clone() })
    }

    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self.group_versions().iter().map(|(g, vs)| Self::group_doc(g, vs)).collect();
        json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
    }

    pub fn api_group(&self, group: &str) -> Option<Value> {
        self.group_versions().iter().find(|(g, _)| g == group).map(|(g, vs)| {
            let mut d = Self::group_doc(g, vs);
            d["kind"] = json!("APIGroup");
            d["apiVersion"] = json!("v1");
            d
        })
    }

    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let types: Vec<&Arc<ResourceType>> = self.types.iter().filter(|t| t.group == group && t.version == version).collect();
        if types.is_empty() {
            return None;
        }
        let verbs = json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
        let mut resources = Vec::new();
        for t in types {
            let mut r = json!({
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": verbs,
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            if t.status || !t.extra_subresources.is_empty() {
                r["storageVersionHash"] = json!("fake");
            }
            resources.push(r);
            let mut subs: Vec<&str> = Vec::new();
            if t.status {
                subs.push("status");
            }
            subs.extend(t.extra_subresources.iter().map(String::as_str));
            for s in subs {
                let verbs = if s == "finalize" { json!(["update"]) } else { json!(["get", "patch", "update"]) };
                resources.push(json!({
                    "name": format!("{}/{}", t.plural, s),
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": verbs,
                }));
            }
        }
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }))
    }
}

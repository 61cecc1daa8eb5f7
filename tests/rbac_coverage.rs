//! The operator's RBAC in `deploy/` against what the operator really does.
//!
//! The real controllers and leader election run against the fake API server as the operator's
//! ServiceAccount, authorized by the fake with the RBAC of `deploy/` (loaded from the very files
//! users install), through representative scenarios: tenants with
//! the statefulset, cloudnative-pg and external providers becoming Ready, environments removed
//! under Retain and under Delete, an application removed and the quota back to its default,
//! tenants deleted under Retain and Delete, a tenant of a region routed through a Gateway
//! (HTTPRoutes), TenantUsers of every role-table ClusterRole and a custom role created, changed
//! and deleted, Events all along, and the leader Lease.
//!
//! Every request the operator made becomes an authorization check (verb, API group,
//! resource[/subresource], namespace, name), plus the checks the API server makes that are not
//! requests of their own:
//! - a server-side apply that creates its object (201) is authorized as `create` too;
//! - a RoleBinding to a ClusterRole needs `bind` on that ClusterRole (the operator does not
//!   hold the permissions of the role-table ClusterRoles itself);
//! - an owner reference with `blockOwnerDeletion: true` needs `update` on the owner's
//!   `finalizers` subresource (admission plugin OwnerReferencesPermissionEnforcement).
//!
//! Then (a) every check must be allowed by ClusterRole `tenant-operator`
//! (`deploy/rbac/operator-clusterrole.yaml`, cluster-wide), by Role `tenant-operator`
//! (`deploy/rbac/operator-role.yaml`, in the operator's namespace) or by the operator's grant
//! (`deploy/rbac/tenant-namespace-clusterrole.yaml`) **in a namespace the operator created** —
//! by this file's reading of the rules and by the fake's authorizer alike, and no request of the
//! operator was refused — and (b) every permission those grant must have been needed, except
//! what `unused_on_purpose` lists with the reason.
//!
//! A second test loads `deploy/` with one rule removed and shows the operator can then no
//! longer converge a Tenant: a missing permission fails the suite.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, UserInfo};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use support::e2e::{deploy_manifests, TestEnv};
use support::fixtures::{acme_tenant, example_config, ready};
use support::gateway::GATEWAY_API_CRDS;
use support::scenario::Scenario;
use support::{repo_path, CNPG_CLUSTER_CRD};
use tenant_operator::config::{GatewayRef, Routing};
use tenant_operator::leader::{LeaderElection, LeaseConfig};
use tenant_operator::operator::{run_controllers, ControllerOptions};
use tenant_operator::types::{NamespaceState, Tenant, TenantPhase, TenantUser};
use tokio::time::Instant;

/// The operator's user, as the API server would see its ServiceAccount.
const OPERATOR: &str = "system:serviceaccount:tenant-operator:tenant-operator";
const OPERATOR_NS: &str = "tenant-operator";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a permission in `deploy/` that no scenario needed is granted anyway; `None` when it
/// must be used. Keep this short: everything else must be used.
fn unused_on_purpose(grant: &Check, rule: &Rule) -> Option<&'static str> {
    let also_list = Check { verb: "list".into(), name: None, ..grant.clone() };
    if grant.verb == "get" && rule.allows(&also_list) {
        // The controllers read from their caches, so most kinds see no single-object reads;
        // a get grants nothing a list does not already give.
        return Some("get comes with list, which already reads every object");
    }
    None
}

// ------------------------------------------------------------------------------ RBAC rules

/// One authorization check, as the API server's authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Check {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    /// `None` for cluster-scoped requests and for lists/watches across all namespaces.
    namespace: Option<String>,
    name: Option<String>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " named {name}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

impl Rule {
    fn from_value(v: &Value) -> Self {
        Self {
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            verbs: strings(v, "verbs"),
            resource_names: strings(v, "resourceNames"),
        }
    }

    /// Kubernetes' RBAC rule matching (`rbac/v1` `PolicyRule`, as in the API server's
    /// `RuleAllows`): `*` in apiGroups, verbs and resources; `*/sub` for a subresource of any
    /// resource; resourceNames restrict to requests naming one of them.
    fn allows(&self, check: &Check) -> bool {
        let group = self.api_groups.iter().any(|g| g == "*" || *g == check.group);
        let verb = self.verbs.iter().any(|v| v == "*" || *v == check.verb);
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == check.resource
                || r.strip_prefix("*/").is_some_and(|sub| check.resource.split_once('/').is_some_and(|(_, s)| s == sub))
        });
        let name = self.resource_names.is_empty() || check.name.as_ref().is_some_and(|n| self.resource_names.contains(n));
        group && verb && resource && name
    }

    /// Every (group, resource, verb, name) this rule grants, for the "nothing unused" check.
    fn grants(&self) -> Vec<Check> {
        let names: Vec<Option<String>> =
            if self.resource_names.is_empty() { vec![None] } else { self.resource_names.iter().cloned().map(Some).collect() };
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    for name in &names {
                        out.push(Check {
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                            namespace: None,
                            name: name.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

/// The rules of a ClusterRole (anywhere), of Roles (in their namespace) and of the operator's
/// grant (in the namespaces the operator created, where it binds the grant to itself).
#[derive(Default)]
struct Policy {
    cluster: Vec<Rule>,
    namespaced: Vec<(String, Rule)>,
    grant: Vec<Rule>,
    /// The namespaces the operator created (and so holds its grant in).
    granted_in: BTreeSet<String>,
}

/// The ClusterRole the operator binds to itself in each namespace it creates.
const GRANT: &str = "tenant-operator:tenant-namespace";

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("parse {path}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

impl Policy {
    fn add_file(&mut self, path: &str) {
        for doc in yaml_docs(path) {
            let rules = doc.get("rules").and_then(Value::as_array).cloned().unwrap_or_default().iter().map(Rule::from_value).collect();
            match doc.get("kind").and_then(Value::as_str) {
                Some("ClusterRole") if doc.pointer("/metadata/name").and_then(Value::as_str) == Some(GRANT) => {
                    self.grant.extend::<Vec<Rule>>(rules)
                }
                Some("ClusterRole") => self.cluster.extend::<Vec<Rule>>(rules),
                Some("Role") => {
                    let ns = doc.pointer("/metadata/namespace").and_then(Value::as_str).expect("Role namespace").to_string();
                    self.namespaced.extend(rules.into_iter().map(|r| (ns.clone(), r)));
                }
                _ => {}
            }
        }
    }

    fn deploy() -> Self {
        let mut policy = Policy::default();
        policy.add_file("deploy/rbac/operator-clusterrole.yaml");
        policy.add_file("deploy/rbac/operator-role.yaml");
        policy.add_file("deploy/rbac/tenant-namespace-clusterrole.yaml");
        policy
    }

    fn allows(&self, check: &Check) -> bool {
        let granted = check.namespace.as_ref().is_some_and(|ns| self.granted_in.contains(ns));
        self.cluster.iter().any(|r| r.allows(check))
            || self.namespaced.iter().any(|(ns, r)| check.namespace.as_deref() == Some(ns.as_str()) && r.allows(check))
            || (granted && self.grant.iter().any(|r| r.allows(check)))
    }
}

// ------------------------------------------------------------------------------ checks seen

/// The authorization checks behind the operator's requests, with how often each was made.
fn checks_of_requests(fake: &FakeApiServer) -> BTreeMap<Check, usize> {
    let mut out = BTreeMap::new();
    for r in fake.requests().iter().filter(|r| r.user.as_deref() == Some(OPERATOR)) {
        let check = Check {
            verb: r.verb.clone(),
            group: r.group.clone(),
            resource: r.resource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        };
        // Server-side apply of an object that did not exist creates it: authorized as create.
        if r.verb == "patch" && r.code == 201 {
            *out.entry(Check { verb: "create".into(), ..check.clone() }).or_default() += 1;
        }
        *out.entry(check).or_default() += 1;
    }
    out
}

/// The namespaces the operator created: a server-side apply of a Namespace answered 201.
fn created_namespaces(fake: &FakeApiServer) -> BTreeSet<String> {
    fake.requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(OPERATOR) && r.resource == "namespaces" && r.verb == "patch" && r.code == 201)
        .filter_map(|r| r.name)
        .collect()
}

/// Kinds whose objects the operator writes (for the checks implied by their content).
const WRITTEN_KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ResourceQuota"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "StatefulSet"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("postgresql.cnpg.io/v1", "Cluster"),
];

fn plural_of(kind: &str) -> String {
    match kind {
        "Tenant" => "tenants".into(),
        "TenantUser" => "tenantusers".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// Checks implied by the objects the operator manages as they are stored now: `bind` on the
/// ClusterRoles its RoleBindings name, every permission a Role it writes grants (without
/// `escalate`, a Role may grant only what its writer holds), and `update` on
/// `<owner>/finalizers` for owner references that block the owner's deletion.
fn implied_checks(fake: &FakeApiServer, into: &mut BTreeSet<Check>) {
    for (api_version, kind) in WRITTEN_KINDS {
        for obj in fake.objects(api_version, kind) {
            let managed =
                obj.pointer("/metadata/labels").and_then(Value::as_object).is_some_and(|l| l.contains_key("tenancy.platform.dev/tenant"));
            if !managed {
                continue;
            }
            if *kind == "RoleBinding" && obj.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole") {
                // The escalation check asks about `bind` in the binding's namespace.
                into.insert(Check {
                    verb: "bind".into(),
                    group: "rbac.authorization.k8s.io".into(),
                    resource: "clusterroles".into(),
                    namespace: obj.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from),
                    name: obj.pointer("/roleRef/name").and_then(Value::as_str).map(String::from),
                });
            }
            if *kind == "Role" {
                let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from);
                for rule in obj.pointer("/rules").and_then(Value::as_array).into_iter().flatten() {
                    let list = |field: &str| -> Vec<String> {
                        rule.get(field)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    };
                    let names: Vec<Option<String>> = match list("resourceNames") {
                        names if names.is_empty() => vec![None],
                        names => names.into_iter().map(Some).collect(),
                    };
                    for group in list("apiGroups") {
                        for resource in list("resources") {
                            for verb in list("verbs") {
                                for name in &names {
                                    into.insert(Check {
                                        verb: verb.clone(),
                                        group: group.clone(),
                                        resource: resource.clone(),
                                        namespace: namespace.clone(),
                                        name: name.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            for owner in obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).into_iter().flatten() {
                if owner.get("blockOwnerDeletion").and_then(Value::as_bool) != Some(true) {
                    continue;
                }
                let api_version = owner.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
                let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                let owner_kind = owner.get("kind").and_then(Value::as_str).unwrap_or_default();
                // The owner's scope decides the namespace.
                let namespaced_owner = !matches!(owner_kind, "Tenant" | "Namespace");
                into.insert(Check {
                    verb: "update".into(),
                    group: group.into(),
                    resource: format!("{}/finalizers", plural_of(owner_kind)),
                    namespace: if namespaced_owner {
                        obj.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from)
                    } else {
                        None
                    },
                    name: owner.get("name").and_then(Value::as_str).map(String::from),
                });
            }
        }
    }
}

// ------------------------------------------------------------------------------ scenario

struct Env {
    fake: FakeApiServer,
    test: Client,
    implied: BTreeSet<Check>,
}

impl Env {
    async fn wait<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + TIMEOUT;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_obj<K>(&self, api: Api<K>, name: &str, check: impl Fn(&K) -> bool) -> K
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = None;
        loop {
            if let Ok(Some(o)) = api.get_opt(name).await {
                if check(&o) {
                    return o;
                }
                last = Some(o);
            }
            assert!(Instant::now() < deadline, "timed out waiting for {} {name}; last: {last:#?}", K::kind(&()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gone<K>(&self, api: Api<K>, name: &str)
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.wait(&format!("{} {name} to be gone", K::kind(&())), || async { matches!(api.get_opt(name).await, Ok(None)) }).await;
    }

    fn tenants(&self) -> Api<Tenant> {
        Api::all(self.test.clone())
    }

    /// The TenantUsers of tenant `slug`, in its account namespace.
    fn users(&self, slug: &str) -> Api<TenantUser> {
        Api::namespaced(self.test.clone(), &format!("{slug}-account"))
    }

    async fn create_tenant(&self, slug: &str, spec: Value) {
        let t: Tenant = serde_json::from_value(json!({
            "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": slug},
            "spec": spec,
        }))
        .expect("tenant");
        self.tenants().create(&PostParams::default(), &t).await.unwrap_or_else(|e| panic!("create Tenant {slug}: {e}"));
    }

    async fn patch_spec(&self, slug: &str, spec: Value) {
        self.tenants()
            .patch(slug, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec })))
            .await
            .unwrap_or_else(|e| panic!("patch Tenant {slug}: {e}"));
    }

    async fn wait_tenant(&self, slug: &str, check: impl Fn(&Tenant) -> bool) -> Tenant {
        self.wait_obj(self.tenants(), slug, check).await
    }

    async fn wait_ready(&self, slug: &str) -> Tenant {
        self.wait_tenant(slug, |t| {
            t.status.as_ref().is_some_and(|s| s.phase == Some(TenantPhase::Ready) && s.observed_generation == t.metadata.generation)
        })
        .await
    }

    /// What `Scenario::mark_statefulsets_ready` does: the fake runs no pods.
    async fn mark_statefulsets_ready(&self, slug: &str, count: usize) {
        let api: Api<StatefulSet> = Api::all(self.test.clone());
        let lp = ListParams::default().labels(&format!("tenancy.platform.dev/tenant={slug}"));
        self.wait("the database StatefulSets", || async { api.list(&lp).await.is_ok_and(|l| l.items.len() >= count) }).await;
        for sts in api.list(&lp).await.expect("list").items {
            let ns = sts.namespace().unwrap_or_default();
            Api::<StatefulSet>::namespaced(self.test.clone(), &ns)
                .patch_status(
                    &sts.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}})),
                )
                .await
                .expect("mark StatefulSet ready");
        }
    }

    async fn delete_tenant(&self, slug: &str) {
        self.tenants().delete(slug, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete Tenant {slug}: {e}"));
        self.wait_gone(self.tenants(), slug).await;
    }

    async fn create_user(&self, name: &str, slug: &str, roles: &[&str], custom: &[&str]) {
        let u: TenantUser = serde_json::from_value(json!({
            "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "TenantUser", "metadata": {"name": name, "namespace": format!("{slug}-account")},
            "spec": {"email": format!("{name}@example.com"), "username": name, "firstName": "F", "lastName": "L",
                     "roles": roles, "customRoles": custom},
        }))
        .expect("user");
        self.users(slug).create(&PostParams::default(), &u).await.unwrap_or_else(|e| panic!("create TenantUser {name}: {e}"));
    }

    /// Waits until the user's RoleBindings name exactly `roles` (sorted, deduplicated).
    async fn wait_bindings(&self, user: &str, roles: &[&str]) {
        let api: Api<RoleBinding> = Api::all(self.test.clone());
        let lp = ListParams::default().labels(&format!("tenancy.platform.dev/user={user}"));
        let want: BTreeSet<String> = roles.iter().map(|r| r.to_string()).collect();
        self.wait(&format!("RoleBindings of {user} to {want:?}"), || async {
            let got: BTreeSet<String> = api
                .list(&lp)
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.metadata.deletion_timestamp.is_none())
                .map(|b| b.role_ref.name)
                .collect();
            got == want
        })
        .await;
    }

    fn snapshot(&mut self) {
        implied_checks(&self.fake, &mut self.implied);
    }
}

/// The operator as `run` wires it: leader election, controllers while leading.
struct Operator {
    election: LeaderElection,
    stop: tokio::sync::oneshot::Sender<()>,
    controllers: tokio::task::JoinHandle<()>,
}

async fn start_operator(fake: &FakeApiServer) -> Operator {
    let client = fake.client_as_service_account(OPERATOR_NS, "tenant-operator");
    let lease = LeaseConfig::new(OPERATOR_NS, "tenant-operator", "rbac-test").with_lease_duration(Duration::from_secs(6));
    let election = LeaderElection::start(client.clone(), lease).expect("leader election");
    let mut leader = election.subscribe();
    tokio::time::timeout(TIMEOUT, leader.wait_for(|l| *l)).await.expect("becomes leader").expect("elector alive");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The custom role of the scenario is one TenantUsers may name.
    let mut config = example_config();
    config.users.assignable_roles = vec!["flow-billing-editor".to_string()];
    // A region routed through a Gateway.
    let mut gateway_region = config.clusters["eu"].clone();
    gateway_region.routing = Routing::Gateway;
    gateway_region.gateway =
        Some(GatewayRef { name: "public".into(), namespace: "gateway-system".into(), section_name: None, data_plane_namespace: None });
    config.clusters.insert("gw".to_string(), gateway_region);
    let controllers = tokio::spawn(run_controllers(client, Arc::new(config), ControllerOptions::default(), async move {
        let _ = stopped.await;
    }));
    Operator { election, stop, controllers }
}

impl Operator {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.controllers).await.expect("controllers stop").expect("controllers");
        self.election.release().await.expect("release the Lease");
    }
}

fn ns_state(t: &Tenant, ns: &str) -> Option<NamespaceState> {
    t.status.as_ref().and_then(|s| s.namespaces.iter().find(|n| n.name == ns).map(|n| n.state))
}

async fn run_scenarios() -> (FakeApiServer, BTreeSet<Check>) {
    let fake = FakeApiServer::builder().crd(CNPG_CLUSTER_CRD).start().await;
    for crd in GATEWAY_API_CRDS.split("\n---\n").filter(|doc| doc.contains("kind: CustomResourceDefinition")) {
        fake.register_crd(crd).expect("a Gateway API CRD");
    }
    for (file, yaml) in deploy_manifests() {
        fake.apply_manifests(&yaml).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let test = fake.client();
    let mut env = Env { fake, test, implied: BTreeSet::new() };
    let operator = start_operator(&env.fake).await;
    // Two failed applies: the second ReconcileFailed Event of the same object extends the first
    // (an Event series is a patch), as repeated failures do in production.
    env.fake.fail_next_as(OPERATOR, "patch", "configmaps", 500, 2);

    // 1. A statefulset tenant in three environments with two applications and a quota → Ready.
    let keep = "rbac-keep";
    env.create_tenant(
        keep,
        json!({"displayName": "Keep", "cluster": "uk", "environments": ["dev", "staging", "prod"],
               "applications": ["xconsole", "u-assist"], "database": {"provider": "statefulset", "storage": "1Gi"},
               "quota": {"cpu": "2", "memory": "4Gi", "pods": 10}, "deletionPolicy": "Retain"}),
    )
    .await;
    env.mark_statefulsets_ready(keep, 3).await;
    env.wait_ready(keep).await;
    env.snapshot();

    // 2. Users of every role-table ClusterRole; then changed, deleted. A custom role: deploy/
    //    does not let the operator bind it, and the API server refuses its RoleBinding.
    env.create_user("custom", keep, &[], &["flow-billing-editor"]).await;
    env.wait("the custom role's RoleBinding to be refused", || async { custom_binding_refusal(&env.fake).is_some() }).await;
    env.users(keep).delete("custom", &DeleteParams::default()).await.expect("delete user");
    env.wait_gone(env.users(keep), "custom").await;
    env.create_user("designer", keep, &["Designer"], &[]).await;
    env.create_user("supervisor", keep, &["Supervisor"], &[]).await;
    env.create_user("agent", keep, &["Agent"], &[]).await;
    // Each user also has its self-service Role in the account namespace.
    env.wait_bindings("designer", &["tenancy:editor", "tenancy:viewer", "tenantuser-designer:self"]).await;
    env.wait_bindings("supervisor", &["tenancy:supervisor", "tenantuser-supervisor:self"]).await;
    env.wait_bindings("agent", &["tenancy:agent", "tenantuser-agent:self"]).await;
    env.snapshot();
    env.users(keep)
        .patch("designer", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": ["AccountAdmin"], "customRoles": null}})))
        .await
        .expect("change user");
    env.wait_bindings("designer", &["tenancy:account-admin", "tenancy:viewer", "tenancy:user-admin", "tenantuser-designer:self"]).await;
    env.snapshot();
    for user in ["designer", "supervisor", "agent"] {
        env.users(keep).delete(user, &DeleteParams::default()).await.expect("delete user");
        env.wait_gone(env.users(keep), user).await;
    }
    env.wait_bindings("designer", &[]).await;

    // 3. An application and an environment removed (Retain: the namespace is kept), the quota
    //    back to the configured default (every tenant namespace keeps one);
    //    a ConfigMap and a NetworkPolicy a person created with a copy of the tenant's label are
    //    not the operator's: they stay.
    let leftover: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "leftover", "namespace": format!("{keep}-dev"),
        "labels": {"tenancy.platform.dev/tenant": keep, "tenancy.platform.dev/environment": "dev"}}}))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(env.test.clone(), &format!("{keep}-dev"))
        .create(&PostParams::default(), &leftover)
        .await
        .expect("leftover");
    let leftover: NetworkPolicy = serde_json::from_value(json!({"metadata": {"name": "leftover", "namespace": format!("{keep}-dev"),
        "labels": {"tenancy.platform.dev/tenant": keep, "tenancy.platform.dev/environment": "dev"}}, "spec": {"podSelector": {}}}))
    .expect("networkpolicy");
    Api::<NetworkPolicy>::namespaced(env.test.clone(), &format!("{keep}-dev"))
        .create(&PostParams::default(), &leftover)
        .await
        .expect("leftover");
    env.patch_spec(keep, json!({"environments": ["dev", "prod"], "applications": ["xconsole"], "quota": null})).await;
    let staging = format!("{keep}-staging");
    env.wait_tenant(keep, |t| ns_state(t, &staging) == Some(NamespaceState::Retained)).await;
    env.wait_gone(Api::<Ingress>::namespaced(env.test.clone(), &format!("{keep}-dev")), "u-assist").await;
    let default_pods = example_config().namespaces.quota()["pods"].0.clone();
    let quota_is_default = |q: &k8s_openapi::api::core::v1::ResourceQuota| {
        q.spec.as_ref().and_then(|s| s.hard.as_ref()).and_then(|h| h.get("pods")).is_some_and(|p| p.0 == default_pods)
    };
    let quotas = Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(env.test.clone(), &format!("{keep}-dev"));
    env.wait_obj(quotas, "tenant-quota", quota_is_default).await;
    env.wait_ready(keep).await;
    let dev_configmaps = Api::<ConfigMap>::namespaced(env.test.clone(), &format!("{keep}-dev"));
    assert!(dev_configmaps.get_opt("leftover").await.expect("get").is_some(), "a person's ConfigMap is not the operator's to delete");
    let dev_policies = Api::<NetworkPolicy>::namespaced(env.test.clone(), &format!("{keep}-dev"));
    assert!(dev_policies.get_opt("leftover").await.expect("get").is_some(), "a person's NetworkPolicy is not the operator's to delete");

    // 5. Deleted under Retain: namespaces and PVCs are labelled retained and kept.
    env.snapshot();
    env.delete_tenant(keep).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.test.clone(), &format!("{keep}-dev"));
    let pvc = pvcs.list(&ListParams::default()).await.expect("pvcs").items;
    assert!(!pvc.is_empty() && pvc.iter().all(|p| p.labels().get("tenancy.platform.dev/retained").is_some()), "{pvc:#?}");

    // 6. A statefulset tenant under Delete: an environment removed, then the tenant deleted.
    let drop = "rbac-drop";
    env.create_tenant(
        drop,
        json!({"displayName": "Drop", "cluster": "uk", "environments": ["dev", "staging"], "applications": ["xconsole"],
               "database": {"provider": "statefulset"}, "deletionPolicy": "Delete"}),
    )
    .await;
    env.mark_statefulsets_ready(drop, 2).await;
    env.wait_ready(drop).await;
    env.patch_spec(drop, json!({"environments": ["dev"]})).await;
    env.wait_gone(Api::<Namespace>::all(env.test.clone()), &format!("{drop}-staging")).await;
    env.wait_ready(drop).await;
    env.snapshot();
    env.delete_tenant(drop).await;
    env.wait_gone(Api::<Namespace>::all(env.test.clone()), &format!("{drop}-dev")).await;

    // 7. A cloudnative-pg tenant: the Cluster is created and reported ready.
    let cnpg = "rbac-cnpg";
    env.create_tenant(
        cnpg,
        json!({"displayName": "CNPG", "cluster": "uk", "environments": ["dev"], "applications": [],
               "database": {"provider": "cloudnative-pg"}, "deletionPolicy": "Delete"}),
    )
    .await;
    let cluster_api = ApiResource::from_gvk(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"));
    let clusters: Api<DynamicObject> = Api::namespaced_with(env.test.clone(), &format!("{cnpg}-dev"), &cluster_api);
    let cluster_name = format!("{cnpg}-db");
    env.wait("the CloudNativePG Cluster", || async { clusters.get_opt(&cluster_name).await.is_ok_and(|c| c.is_some()) }).await;
    clusters
        .patch_status(
            &cluster_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyInstances": 1, "phase": "Cluster in healthy state"}})),
        )
        .await
        .expect("cluster ready");
    env.wait_ready(cnpg).await;
    env.snapshot();
    env.delete_tenant(cnpg).await;

    // 8. An external tenant: the operator reads the admin Secret in its own namespace (absent
    //    here, so the tenant reports it; no PostgreSQL is involved).
    let ext = "rbac-ext";
    env.create_tenant(
        ext,
        json!({"displayName": "Ext", "cluster": "uk", "environments": ["dev"], "applications": [],
               "database": {"provider": "external"}}),
    )
    .await;
    env.wait("the admin Secret to be read", || async {
        env.fake
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(OPERATOR) && r.resource == "secrets" && r.namespace.as_deref() == Some(OPERATOR_NS))
    })
    .await;
    env.wait_tenant(ext, |t| {
        t.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "DatabaseReady" && c.status == "False"))
    })
    .await;

    // 9. A tenant of a `routing: gateway` region: its HTTPRoutes, accepted by the test acting as
    //    the gateway controller, the route of a removed application deleted; the Gateway is
    //    watched.
    let gw = "rbac-gw";
    let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "public", "namespace": "gateway-system"},
        "spec": {"gatewayClassName": "any", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}});
    env.fake
        .apply_manifests(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gateway-system\n---\n{}",
            serde_yaml::to_string(&gateway).expect("yaml")
        ))
        .expect("the Gateway");
    env.create_tenant(
        gw,
        json!({"displayName": "Gateway", "cluster": "gw", "environments": ["dev"], "applications": ["xconsole", "u-assist"],
               "database": {"provider": "none"}, "deletionPolicy": "Delete"}),
    )
    .await;
    let route_api = ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"));
    let routes: Api<DynamicObject> = Api::namespaced_with(env.test.clone(), &format!("{gw}-dev"), &route_api);
    env.wait("the HTTPRoutes", || async { routes.list(&ListParams::default()).await.is_ok_and(|l| l.items.len() == 2) }).await;
    for route in routes.list(&ListParams::default()).await.expect("routes").items {
        let generation = route.metadata.generation.unwrap_or(1);
        let condition = |type_: &str| {
            json!({"type": type_, "status": "True", "reason": type_, "message": "",
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        let status = json!({"status": {"parents": [{"parentRef": route.data["spec"]["parentRefs"][0],
            "controllerName": "example.com/gateway", "conditions": [condition("Accepted"), condition("ResolvedRefs")]}]}});
        routes.patch_status(&route.name_any(), &PatchParams::default(), &Patch::Merge(status)).await.expect("route status");
    }
    env.wait_ready(gw).await;
    env.patch_spec(gw, json!({"applications": ["xconsole"]})).await;
    env.wait("the removed application's route to go", || async { matches!(routes.get_opt("u-assist").await, Ok(None)) }).await;
    env.wait_ready(gw).await;
    env.snapshot();
    env.delete_tenant(gw).await;

    operator.stop().await;
    let Env { fake, implied, .. } = env;
    (fake, implied)
}

/// The operator's request for a RoleBinding to the custom role, answered with the 404 the
/// registry gives a binding to a missing ClusterRole the requester may not `bind`.
fn custom_binding_refusal(fake: &FakeApiServer) -> Option<fake_apiserver::RequestRecord> {
    fake.requests().into_iter().find(|r| {
        r.user.as_deref() == Some(OPERATOR)
            && r.resource == "rolebindings"
            && r.name.as_deref().is_some_and(|n| n.contains("flow-billing-editor"))
            && r.code == 404
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_allows_every_operator_request_and_grants_nothing_unused() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let (fake, implied) = run_scenarios().await;
    eprintln!("scenarios took {:?}", started.elapsed());

    let requested = checks_of_requests(&fake);
    assert!(requested.keys().any(|c| c.resource == "leases"), "the Lease requests are covered");
    let mut policy = Policy::deploy();
    policy.granted_in = created_namespaces(&fake);
    assert!(policy.granted_in.contains("rbac-keep-dev") && policy.granted_in.contains("rbac-keep-account"), "{:?}", policy.granted_in);

    // Custom roles: binding one needs `bind` on it, which deploy/ grants only for the role-table
    // ClusterRoles; the API server refused the operator's RoleBinding
    // (docs/operations.md#custom-roles). The optional component grants it.
    let custom = Check {
        verb: "bind".into(),
        group: "rbac.authorization.k8s.io".into(),
        resource: "clusterroles".into(),
        namespace: Some("rbac-keep-dev".into()),
        name: Some("flow-billing-editor".into()),
    };
    assert!(custom_binding_refusal(&fake).is_some(), "the custom role's RoleBinding was refused");
    assert!(!policy.allows(&custom), "deploy/ must not let the operator bind arbitrary ClusterRoles");
    // The component adds `bind` on any ClusterRole to the grant: in tenant namespaces only.
    let mut with_component = Policy::deploy();
    with_component.granted_in = policy.granted_in.clone();
    for patch in yaml_docs("deploy/components/bind-any-clusterrole/bind-any-clusterrole.yaml") {
        for op in patch.as_array().into_iter().flatten() {
            assert_eq!(op["path"], "/rules/-", "the component appends a rule to the grant");
            with_component.grant.push(Rule::from_value(&op["value"]));
        }
    }
    assert!(with_component.allows(&custom), "components/bind-any-clusterrole allows custom roles");
    assert!(!with_component.allows(&Check { namespace: Some("kube-system".into()), ..custom.clone() }), "only in tenant namespaces");

    let all: BTreeSet<Check> = requested.keys().cloned().chain(implied.iter().cloned()).collect();
    let denied: Vec<String> = all.iter().filter(|c| !policy.allows(c)).map(|c| format!("  {c}")).collect();
    // The fake's authorizer, which refused nothing the operator asked, reads deploy/ the same way.
    let operator_user = UserInfo::service_account(OPERATOR_NS, "tenant-operator");
    let refused: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.user.as_deref() == Some(OPERATOR) && r.code == 403)
        .map(|r| format!("  {} {} {:?} {:?}", r.verb, r.gr(), r.namespace, r.name))
        .collect();
    assert!(refused.is_empty(), "the fake refused operator requests deploy/ should allow:\n{}", refused.join("\n"));
    // (The grant goes with its namespace: checks in namespaces deleted since are compared by
    // this file's reading only.)
    let exists = |ns: &Option<String>| ns.as_ref().is_none_or(|ns| fake.object("v1", "Namespace", "", ns).is_some());
    for c in all.iter().filter(|c| exists(&c.namespace)) {
        let by_fake = fake.allows(
            &operator_user,
            &c.verb,
            &c.group,
            &c.resource,
            c.namespace.as_deref().unwrap_or_default(),
            c.name.as_deref().unwrap_or_default(),
        );
        assert_eq!(by_fake, policy.allows(c), "the fake's authorizer and this test disagree on {c}");
    }

    // (b) Every permission granted was needed by some check.
    let mut unused = Vec::new();
    let grants = policy
        .cluster
        .iter()
        .map(|r| ("ClusterRole", r))
        .chain(policy.namespaced.iter().map(|(_, r)| ("Role", r)))
        .chain(policy.grant.iter().map(|r| ("ClusterRole tenant-operator:tenant-namespace", r)));
    for (role, rule) in grants {
        for grant in rule.grants() {
            let single = Rule {
                api_groups: vec![grant.group.clone()],
                resources: vec![grant.resource.clone()],
                verbs: vec![grant.verb.clone()],
                resource_names: grant.name.clone().into_iter().collect(),
            };
            let on_purpose = unused_on_purpose(&grant, rule).is_some();
            if !on_purpose && !all.iter().any(|c| single.allows(c)) {
                unused.push(format!("  {role}: {grant}"));
            }
        }
    }
    let summary: Vec<String> = {
        let mut by_perm: BTreeMap<(String, String, String, bool), usize> = BTreeMap::new();
        for (c, n) in &requested {
            *by_perm.entry((c.group.clone(), c.resource.clone(), c.verb.clone(), c.namespace.is_some())).or_default() += n;
        }
        by_perm.into_iter().map(|((g, r, v, ns), n)| format!("  {v:6} {g}/{r}{} ×{n}", if ns { " (ns)" } else { "" })).collect()
    };
    eprintln!("operator requests by permission:\n{}", summary.join("\n"));
    eprintln!("implied checks:\n{}", implied.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n"));
    assert!(denied.is_empty(), "the operator needs permissions deploy/ does not grant:\n{}", denied.join("\n"));
    assert!(unused.is_empty(), "deploy/ grants permissions no scenario needed:\n{}", unused.join("\n"));
}

/// `yaml` (a ClusterRole) without `resource` of the core group in any of its rules.
fn without_core_resource(yaml: &str, resource: &str) -> String {
    let mut role: Value = serde_yaml::from_str(yaml).expect("ClusterRole YAML");
    for rule in role["rules"].as_array_mut().expect("rules") {
        if rule["apiGroups"].as_array().is_some_and(|g| g.iter().any(|g| g == "")) {
            if let Some(resources) = rule["resources"].as_array_mut() {
                resources.retain(|r| r != resource);
            }
        }
    }
    serde_yaml::to_string(&role).expect("YAML")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_missing_from_deploy_stops_the_operator_converging() {
    let manifests: Vec<String> = deploy_manifests()
        .into_iter()
        .map(
            |(path, yaml)| {
                if path.ends_with("tenant-namespace-clusterrole.yaml") {
                    without_core_resource(&yaml, "configmaps")
                } else {
                    yaml
                }
            },
        )
        .collect();
    let env = TestEnv::with_fake_and_manifests(FakeApiServer::start().await, &manifests);
    let s = Scenario::start_on(env, example_config()).await;
    let slug = s.slug("no-configmaps");
    s.create_tenant(&acme_tenant(&slug, json!({"environments": ["dev"]}))).await;
    let fake = s.fake().expect("the fake");
    let refused = || {
        fake.requests()
            .into_iter()
            .filter(|r| r.user.as_deref() == Some(OPERATOR) && r.resource == "configmaps" && r.code == 403)
            .collect::<Vec<_>>()
    };
    s.wait_for("the operator's ConfigMap requests to be refused", || async { !refused().is_empty() }).await;
    // Long enough for the operator to have converged with the permission (a few hundred ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tenant = Api::<Tenant>::all(s.client()).get(&slug).await.expect("tenant");
    assert!(!ready(&tenant), "the Tenant must not become Ready without the permission: {:#?}", tenant.status);
    assert!(fake.object("v1", "ConfigMap", &format!("{slug}-dev"), "tenant-config").is_none());
    eprintln!("refused: {:#?}\nstatus: {:#?}", refused().first(), tenant.status);
    s.cleanup().await;
}

#[test]
fn rule_matcher_follows_kubernetes_rbac() {
    let check = |verb: &str, group: &str, resource: &str, name: Option<&str>| Check {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        namespace: None,
        name: name.map(String::from),
    };
    let rule = |v: Value| Rule::from_value(&v);
    let r = rule(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}));
    assert!(r.allows(&check("get", "", "secrets", Some("x"))));
    assert!(!r.allows(&check("get", "", "secrets/status", Some("x"))), "a subresource needs its own entry");
    assert!(!r.allows(&check("list", "", "secrets", None)));
    assert!(!r.allows(&check("get", "apps", "secrets", Some("x"))));
    let named = rule(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"], "resourceNames": ["a"]}));
    assert!(named.allows(&check("get", "", "secrets", Some("a"))));
    assert!(!named.allows(&check("get", "", "secrets", Some("b"))));
    assert!(!named.allows(&check("list", "", "secrets", None)), "resourceNames never match unnamed requests");
    let wild = rule(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
    assert!(wild.allows(&check("bind", "rbac.authorization.k8s.io", "clusterroles", Some("admin"))));
    assert!(wild.allows(&check("patch", "tenancy.platform.dev", "tenants/status", Some("t"))));
    let sub = rule(json!({"apiGroups": ["tenancy.platform.dev"], "resources": ["*/status"], "verbs": ["patch"]}));
    assert!(sub.allows(&check("patch", "tenancy.platform.dev", "tenants/status", Some("t"))));
    assert!(!sub.allows(&check("patch", "tenancy.platform.dev", "tenants", Some("t"))));
    let mut policy = Policy::default();
    policy.namespaced.push(("op".into(), rule(json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}))));
    let lease = |ns: Option<&str>| Check { namespace: ns.map(String::from), ..check("get", "coordination.k8s.io", "leases", Some("l")) };
    assert!(policy.allows(&lease(Some("op"))));
    assert!(!policy.allows(&lease(Some("other"))), "a Role grants only in its namespace");
    policy.grant.push(rule(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})));
    policy.granted_in.insert("acme-dev".into());
    let secret = |ns: Option<&str>| Check { namespace: ns.map(String::from), ..check("get", "", "secrets", Some("s")) };
    assert!(policy.allows(&secret(Some("acme-dev"))), "the grant holds where the operator created the namespace");
    assert!(!policy.allows(&secret(Some("kube-system"))), "and nowhere else");
    assert!(!policy.allows(&secret(None)), "nor cluster-wide");
    assert!(!policy.allows(&lease(None)), "a Role grants nothing cluster-wide");
}

//! Authentication, RBAC authorization, impersonation and the escalation checks of the fake,
//! against the real API server's behaviour and messages.

use fake_apiserver::{FakeApiServer, UserInfo};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

const OPERATOR: &str = "system:serviceaccount:tenant-operator:tenant-operator";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn fake_with_namespaces(names: &[&str]) -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for ns in names {
        Api::<Namespace>::all(fake.client()).create(&PostParams::default(), &obj(json!({"metadata": {"name": ns}}))).await.unwrap();
    }
    fake
}

fn cm(name: &str) -> ConfigMap {
    obj(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
}

fn operator(fake: &FakeApiServer) -> Client {
    fake.client_as_service_account("tenant-operator", "tenant-operator")
}

#[tokio::test]
async fn denials_answer_403_with_the_real_message_shape() {
    let fake = fake_with_namespaces(&["tenant-operator", "acme-dev"]).await;
    let client = operator(&fake);
    let s = api_err(Api::<ConfigMap>::namespaced(client.clone(), "acme-dev").get("tenant-config").await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        format!(
            r#"configmaps "tenant-config" is forbidden: User "{OPERATOR}" cannot get resource "configmaps" in API group "" in the namespace "acme-dev""#
        )
    );
    let d = s.details.unwrap();
    assert_eq!((d.kind.as_str(), d.name.as_str(), d.group.as_str()), ("configmaps", "tenant-config", ""));

    let s = api_err(Api::<Namespace>::all(client.clone()).list(&ListParams::default()).await);
    assert_eq!(
        s.message,
        format!(r#"namespaces is forbidden: User "{OPERATOR}" cannot list resource "namespaces" in API group "" at the cluster scope"#)
    );

    // The subresource is named in the reason, not in the qualified resource.
    let tenants = Api::<kube::core::DynamicObject>::all_with(
        client.clone(),
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "Tenant")),
    );
    let s = api_err(tenants.patch_status("acme", &PatchParams::default(), &Patch::Merge(json!({"status": {}}))).await);
    assert_eq!(
        s.message,
        format!(
            r#"tenants.tenancy.platform.dev "acme" is forbidden: User "{OPERATOR}" cannot patch resource "tenants/status" in API group "tenancy.platform.dev" at the cluster scope"#
        )
    );
    let denied = fake.requests().into_iter().filter(|r| r.code == 403).count();
    assert_eq!(denied, 3, "denials are recorded with the requester: {:?}", fake.requests());
    assert!(fake.requests().iter().filter(|r| r.code == 403).all(|r| r.user.as_deref() == Some(OPERATOR)));
}

#[tokio::test]
async fn unknown_tokens_are_401_and_anonymous_only_sees_public_info() {
    let fake = FakeApiServer::start().await;
    let http = reqwest_like(&fake.url(), "/api/v1/namespaces", Some("not-a-token")).await;
    assert_eq!(http.0, 401);
    assert_eq!(http.1["reason"], "Unauthorized");
    let (code, _) = reqwest_like(&fake.url(), "/version", None).await;
    assert_eq!(code, 200, "system:public-info-viewer covers unauthenticated requests");
    let (code, body) = reqwest_like(&fake.url(), "/apis", None).await;
    assert_eq!(code, 403);
    assert_eq!(body["message"], r#"forbidden: User "system:anonymous" cannot get path "/apis""#);
    let (code, _) = reqwest_like(&fake.url(), "/api/v1/namespaces", None).await;
    assert_eq!(code, 403);
    // Any authenticated user gets discovery (system:discovery), which kube's Discovery needs.
    let client = fake.client_as("nobody");
    kube::Discovery::new(client).run().await.expect("discovery as an unprivileged user");
}

/// A plain HTTP GET with an optional bearer token: (status, JSON body).
async fn reqwest_like(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let code = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    // chunked or plain: take the JSON object inside
    let json = body.find('{').and_then(|s| body.rfind('}').map(|e| &body[s..=e])).unwrap_or("null");
    (code, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test]
async fn bindings_rules_and_subjects_follow_rbac() {
    let fake = fake_with_namespaces(&["tenant-operator", "a", "b"]).await;
    fake.apply_manifests(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cm-reader}
rules:
  - {apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list"]}
  - {apiGroups: [""], resources: ["secrets"], resourceNames: ["only-this"], verbs: ["get"]}
  - {apiGroups: ["tenancy.platform.dev"], resources: ["*/status"], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm-reader}
subjects:
  - {kind: ServiceAccount, name: tenant-operator, namespace: tenant-operator}
  - {kind: Group, name: readers}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: local-sa, namespace: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm-reader}
subjects:
  - {kind: ServiceAccount, name: builder}
"#,
    )
    .unwrap();
    let sa = UserInfo::service_account("tenant-operator", "tenant-operator");
    assert!(fake.allows(&sa, "get", "", "configmaps", "a", "x"));
    assert!(fake.allows(&sa, "list", "", "configmaps", "a", ""));
    assert!(!fake.allows(&sa, "watch", "", "configmaps", "a", ""), "watch is its own verb");
    assert!(!fake.allows(&sa, "get", "", "configmaps", "b", "x"), "a RoleBinding grants only in its namespace");
    assert!(!fake.allows(&sa, "list", "", "configmaps", "", ""), "nor cluster-wide");
    assert!(fake.allows(&sa, "get", "", "secrets", "a", "only-this"));
    assert!(!fake.allows(&sa, "get", "", "secrets", "a", "other"));
    assert!(!fake.allows(&sa, "list", "", "secrets", "a", ""), "resourceNames never match unnamed requests");
    assert!(fake.allows(&sa, "patch", "tenancy.platform.dev", "tenants/status", "a", "t"), "*/status and verb *");
    assert!(!fake.allows(&sa, "patch", "tenancy.platform.dev", "tenants", "a", "t"));
    assert!(fake.allows(&UserInfo::user("jane", &["readers"]), "get", "", "configmaps", "a", "x"), "Group subject");
    assert!(!fake.allows(&UserInfo::user("jane", &[]), "get", "", "configmaps", "a", "x"));
    // A ServiceAccount subject without a namespace is the binding's namespace.
    assert!(fake.allows(&UserInfo::service_account("b", "builder"), "get", "", "configmaps", "b", "x"));
    assert!(!fake.allows(&UserInfo::service_account("a", "builder"), "get", "", "configmaps", "b", "x"));

    // Through HTTP: list is allowed, a watch (`?watch=true`) is not.
    let api: Api<ConfigMap> = Api::namespaced(operator(&fake), "a");
    api.list(&ListParams::default()).await.expect("list allowed");
    let s = api_err(api.watch(&Default::default(), "0").await.map(|_| ()));
    assert!(s.message.contains(r#"cannot watch resource "configmaps""#), "{}", s.message);
}

#[tokio::test]
async fn a_binding_to_a_missing_role_is_reported_in_the_denial() {
    let fake = fake_with_namespaces(&["a"]).await;
    fake.apply_manifests(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dangling, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gone}
subjects: [{kind: User, name: jane}]
"#,
    )
    .unwrap();
    let s = api_err(Api::<ConfigMap>::namespaced(fake.client_as("jane"), "a").get("x").await);
    assert_eq!(
        s.message,
        r#"configmaps "x" is forbidden: User "jane" cannot get resource "configmaps" in API group "" in the namespace "a": RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
    );
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb_and_yields_the_service_account() {
    let fake = fake_with_namespaces(&["tenant-operator"]).await;
    // The admin may impersonate anyone; the ServiceAccount's groups are added.
    let as_sa = fake.client_impersonating(OPERATOR, &[]);
    let s = api_err(Api::<Namespace>::all(as_sa).list(&ListParams::default()).await);
    assert!(s.message.contains(&format!(r#"User "{OPERATOR}" cannot list"#)), "{}", s.message);
    assert_eq!(fake.requests().last().and_then(|r| r.user.clone()).as_deref(), Some(OPERATOR));
    fake.apply_manifests(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: sa-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ns-lister}
subjects: [{kind: Group, name: "system:serviceaccounts:tenant-operator"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ns-lister}
rules: [{apiGroups: [""], resources: ["namespaces"], verbs: ["list"]}]
"#,
    )
    .unwrap();
    Api::<Namespace>::all(fake.client_impersonating(OPERATOR, &[])).list(&ListParams::default()).await.expect("groups of the SA");

    // Without `impersonate`, a user is refused as the real filter refuses it.
    let jane = fake.client_as("jane");
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.auth_info.token = Some(fake.token_for(UserInfo::user("jane", &[])).into());
    config.auth_info.impersonate = Some(OPERATOR.into());
    let s = api_err(Api::<Namespace>::all(Client::try_from(config).unwrap()).list(&ListParams::default()).await);
    assert_eq!(
        s.message,
        r#"serviceaccounts "tenant-operator" is forbidden: User "jane" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "tenant-operator""#
    );
    drop(jane);
}

const ESCALATION_SETUP: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: binder}
rules:
  - {apiGroups: ["rbac.authorization.k8s.io"], resources: ["rolebindings", "roles"], verbs: ["create", "patch", "get"]}
  - {apiGroups: ["rbac.authorization.k8s.io"], resources: ["clusterroles"], verbs: ["bind"], resourceNames: ["bindable", "flow-billing-editor"]}
  - {apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: binder}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: binder}
subjects: [{kind: ServiceAccount, name: tenant-operator, namespace: tenant-operator}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: ["configmaps"], verbs: ["get"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: deleter}
rules:
  - {apiGroups: [""], resources: ["configmaps"], verbs: ["get", "delete"]}
  - {apiGroups: [""], resources: ["pods"], verbs: ["delete"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bindable}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
"#;

fn binding(name: &str, role: &str) -> RoleBinding {
    obj(json!({
        "metadata": {"name": name, "namespace": "a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "name": "jane@acme.example"}],
    }))
}

#[tokio::test]
async fn binding_writes_need_bind_or_every_permission_of_the_role() {
    let fake = fake_with_namespaces(&["tenant-operator", "a"]).await;
    fake.apply_manifests(ESCALATION_SETUP).unwrap();
    let api: Api<RoleBinding> = Api::namespaced(operator(&fake), "a");
    // Holds every permission of `reader`: allowed without bind.
    api.create(&PostParams::default(), &binding("r", "reader")).await.expect("no escalation");
    // `deleter` grants what the requester lacks.
    let s = api_err(api.create(&PostParams::default(), &binding("d", "deleter")).await);
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        format!(
            "rolebindings.rbac.authorization.k8s.io \"d\" is forbidden: user \"{OPERATOR}\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:tenant-operator\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"delete\"]}}\n{{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}}"
        )
    );
    // `bind` on the role (by resourceName) allows anything, through SSA too.
    let ssa = PatchParams::apply("tenant-operator").force();
    let mut b = serde_json::to_value(binding("all", "bindable")).unwrap();
    b["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
    b["kind"] = json!("RoleBinding");
    api.patch("all", &ssa, &Patch::Apply(&b)).await.expect("bind on the role");
    // A missing ClusterRole without bind: the registry's 404 for the role.
    let s = api_err(api.create(&PostParams::default(), &binding("missing", "no-such-role")).await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, r#"clusterroles.rbac.authorization.k8s.io "no-such-role" not found"#);
    // ... and with bind on its name, the binding is stored (the role may come later).
    api.create(&PostParams::default(), &binding("custom", "flow-billing-editor")).await.expect("bind on a missing role");
    // The administrator is never refused.
    Api::<RoleBinding>::namespaced(fake.client(), "a").create(&PostParams::default(), &binding("admin", "deleter")).await.unwrap();
}

#[tokio::test]
async fn role_writes_need_escalate_or_no_new_permissions() {
    let fake = fake_with_namespaces(&["tenant-operator", "a"]).await;
    fake.apply_manifests(ESCALATION_SETUP).unwrap();
    let api: Api<Role> = Api::namespaced(operator(&fake), "a");
    let role = |name: &str, verbs: &[&str]| -> Role {
        obj(
            json!({"metadata": {"name": name, "namespace": "a"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]}),
        )
    };
    api.create(&PostParams::default(), &role("ok", &["get", "list"])).await.expect("held permissions");
    let s = api_err(api.create(&PostParams::default(), &role("more", &["get", "update"])).await);
    assert!(
        s.message.starts_with(
            r#"roles.rbac.authorization.k8s.io "more" is forbidden: user "system:serviceaccount:tenant-operator:tenant-operator""#
        ) && s.message.ends_with("not currently held:\n{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"update\"]}"),
        "{}",
        s.message
    );
    fake.apply_manifests(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: escalator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: escalator}
subjects: [{kind: ServiceAccount, name: tenant-operator, namespace: tenant-operator}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: escalator}
rules: [{apiGroups: ["rbac.authorization.k8s.io"], resources: ["roles"], verbs: ["escalate"]}]
"#,
    )
    .unwrap();
    api.create(&PostParams::default(), &role("more", &["get", "update"])).await.expect("escalate");
    let cr: ClusterRole = obj(json!({"metadata": {"name": "x"}, "rules": []}));
    let s = api_err(Api::<ClusterRole>::all(operator(&fake)).create(&PostParams::default(), &cr).await);
    assert!(s.message.contains(r#"cannot create resource "clusterroles""#), "{}", s.message);
}

#[tokio::test]
async fn an_apply_that_creates_is_authorized_as_create() {
    let fake = fake_with_namespaces(&["a"]).await;
    fake.apply_manifests(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: patcher, namespace: a}
rules: [{apiGroups: [""], resources: ["configmaps"], verbs: ["patch"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: patcher, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: patcher}
subjects: [{kind: User, name: jane}]
"#,
    )
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(fake.client_as("jane"), "a");
    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"k": "v"}});
    let s = api_err(api.patch("new", &PatchParams::apply("m"), &Patch::Apply(&apply)).await);
    assert_eq!((s.code, s.message.as_str()), (403, r#"configmaps "new" is forbidden: "#));
    Api::<ConfigMap>::namespaced(fake.client(), "a").create(&PostParams::default(), &cm("new")).await.unwrap();
    api.patch("new", &PatchParams::apply("m").force(), &Patch::Apply(&apply)).await.expect("patching an existing object");
}

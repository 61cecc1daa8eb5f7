//! ValidatingAdmissionPolicies evaluated by the fake with kube's CEL engine, on the repository's
//! TenantUser CRD.

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn users(client: kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client,
        "acme-account",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "TenantUser")),
    )
}

fn user(username: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "TenantUser", "metadata": {"name": "acme-jdoe"},
        "spec": {"email": "jane@acme.example", "username": username, "firstName": "Jane", "lastName": "Doe", "roles": ["Designer"]}
    }))
    .unwrap()
}

async fn namespace(fake: &FakeApiServer, name: &str) {
    Api::<Namespace>::all(fake.client())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
        .await
        .unwrap();
}

const SELF_SERVICE: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: self-service}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: ["tenancy.platform.dev"], apiVersions: ["*"], operations: ["UPDATE"], resources: ["tenantusers"]}
  matchConditions:
    - {name: is-self, expression: "request.userInfo.username == object.spec.email"}
  validations:
    - expression: "object.spec.roles == oldObject.spec.roles"
      messageExpression: "'user ' + request.userInfo.username + ' may not change their own roles'"
    - expression: "object.spec.username == oldObject.spec.username"
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: self-service-binding}
spec:
  policyName: self-service
  validationActions: [Deny]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: user-editor}
rules: [{apiGroups: ["tenancy.platform.dev"], resources: ["tenantusers"], verbs: ["get", "patch", "create"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: user-editor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: user-editor}
subjects: [{kind: User, name: jane@acme.example}, {kind: User, name: bob}]
"#;

#[tokio::test]
async fn a_deny_binding_refuses_with_the_plugins_message_and_match_conditions_narrow_it() {
    let fake = FakeApiServer::start().await;
    namespace(&fake, "acme-account").await;
    fake.apply_manifests(SELF_SERVICE).unwrap();
    users(fake.client()).create(&PostParams::default(), &user("jdoe")).await.unwrap();
    let jane = users(fake.client_as("jane@acme.example"));
    let merge = |spec: Value| Patch::Merge(json!({ "spec": spec }));

    jane.patch("acme-jdoe", &PatchParams::default(), &merge(json!({"firstName": "Janet"}))).await.expect("own details");
    let s = api_err(jane.patch("acme-jdoe", &PatchParams::default(), &merge(json!({"roles": ["AccountAdmin"]}))).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        s.message,
        "tenantusers.tenancy.platform.dev \"acme-jdoe\" is forbidden: ValidatingAdmissionPolicy 'self-service' with binding 'self-service-binding' denied request: user jane@acme.example may not change their own roles"
    );
    let s = api_err(jane.patch("acme-jdoe", &PatchParams::default(), &merge(json!({"username": "jane"}))).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "a validation's reason sets the code");
    assert!(s.message.ends_with("denied request: failed expression: object.spec.username == oldObject.spec.username"), "{}", s.message);
    // Someone else (matchConditions false) and the administrator are not the subject.
    users(fake.client_as("bob")).patch("acme-jdoe", &PatchParams::default(), &merge(json!({"roles": ["Analyst"]}))).await.expect("bob");
    users(fake.client()).patch("acme-jdoe", &PatchParams::default(), &merge(json!({"roles": ["AccountAdmin"]}))).await.expect("admin");
    // CREATE is not in matchConstraints.
    let mut other = user("other");
    other.metadata.name = Some("acme-other".into());
    jane.create(&PostParams::default(), &other).await.expect("create is not matched");
}

#[tokio::test]
async fn params_and_validation_actions() {
    let fake = FakeApiServer::start().await;
    namespace(&fake, "policy").await;
    namespace(&fake, "acme-account").await;
    fake.apply_manifests(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: limits, namespace: policy}
data: {maxLength: "4"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: short-usernames}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
      - {apiGroups: ["tenancy.platform.dev"], apiVersions: ["v1alpha1"], operations: ["CREATE", "UPDATE"], resources: ["tenantusers"]}
  validations:
    - {expression: "size(object.spec.username) <= int(params.data.maxLength)", message: "username is too long"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: warn-only}
spec:
  policyName: short-usernames
  paramRef: {name: limits, namespace: policy}
  validationActions: [Warn]
"#,
    )
    .unwrap();
    let admin = users(fake.client_as_user("ops", &["system:masters"]));
    admin.create(&PostParams::default(), &user("jdoe-long")).await.expect("Warn does not refuse");
    fake.apply_manifests(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: deny}
spec:
  policyName: short-usernames
  paramRef: {name: limits, namespace: policy}
  validationActions: [Deny]
"#,
    )
    .unwrap();
    let s = api_err(admin.patch("acme-jdoe", &PatchParams::default(), &Patch::Merge(json!({"spec": {"username": "longer"}}))).await);
    assert_eq!(s.code, 422);
    assert!(
        s.message.ends_with("ValidatingAdmissionPolicy 'short-usernames' with binding 'deny' denied request: username is too long"),
        "{}",
        s.message
    );
    admin.patch("acme-jdoe", &PatchParams::default(), &Patch::Merge(json!({"spec": {"username": "jd"}}))).await.expect("short enough");
}

#[tokio::test]
async fn a_missing_parameter_denies_or_skips_as_the_binding_says_and_match_condition_errors_fail_closed() {
    let fake = FakeApiServer::start().await;
    namespace(&fake, "acme-account").await;
    let admin = users(fake.client());
    admin.create(&PostParams::default(), &user("jdoe")).await.unwrap();
    let policy = |action: &str, condition: &str| {
        format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: p}}
spec:
  paramKind: {{apiVersion: v1, kind: ConfigMap}}
  matchConstraints:
    resourceRules:
      - {{apiGroups: ["tenancy.platform.dev"], apiVersions: ["*"], operations: ["UPDATE"], resources: ["tenantusers"]}}
  matchConditions:
    - {{name: c, expression: "{condition}"}}
  validations:
    - {{expression: "false", message: "validated"}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: b}}
spec:
  policyName: p
  validationActions: [Deny]
  paramRef: {{name: missing, namespace: default, parameterNotFoundAction: {action}}}
"#
        )
    };
    let touch = || Patch::Merge(json!({"spec": {"firstName": "J"}}));
    fake.apply_manifests(&policy("Allow", "true")).unwrap();
    admin.patch("acme-jdoe", &PatchParams::default(), &touch()).await.expect("Allow skips the binding");
    fake.apply_manifests(&policy("Deny", "true")).unwrap();
    let s = api_err(admin.patch("acme-jdoe", &PatchParams::default(), &touch()).await);
    assert!(s.message.contains("no params found for policy binding with `Deny` parameterNotFoundAction"), "{}", s.message);

    fake.apply_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: missing, namespace: default}\ndata: {}\n").unwrap();
    let s = api_err(admin.patch("acme-jdoe", &PatchParams::default(), &touch()).await);
    assert!(s.message.ends_with("denied request: validated"), "{}", s.message);
    fake.apply_manifests(&policy("Deny", "params.data.nothing == 'x'")).unwrap();
    let s = api_err(admin.patch("acme-jdoe", &PatchParams::default(), &touch()).await);
    assert!(s.message.contains("failed to evaluate match condition"), "an erring condition fails closed: {}", s.message);
    fake.apply_manifests(&policy("Deny", "false")).unwrap();
    admin.patch("acme-jdoe", &PatchParams::default(), &touch()).await.expect("a false condition skips the policy");
}

const BY_AUTHORIZER: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: roles-by-authorizer}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: ["tenancy.platform.dev"], apiVersions: ["*"], operations: ["UPDATE"], resources: ["tenantusers"]}
  validations:
    - expression: >-
        object.spec.roles == oldObject.spec.roles ||
        authorizer.group('tenancy.platform.dev').resource('tenantusers').namespace(request.namespace).check('manage').allowed()
      messageExpression: "'spec.roles: ' + request.userInfo.username + ' may not manage users in ' + namespaceObject.metadata.name"
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: roles-by-authorizer}
spec:
  policyName: roles-by-authorizer
  validationActions: [Deny]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: user-editor}
rules: [{apiGroups: ["tenancy.platform.dev"], resources: ["tenantusers"], verbs: ["get", "patch"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: user-editor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: user-editor}
subjects: [{kind: User, name: jane@acme.example}, {kind: User, name: boss@acme.example}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: user-manager, namespace: acme-account}
rules: [{apiGroups: ["tenancy.platform.dev"], resources: ["tenantusers"], verbs: ["manage"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: user-manager, namespace: acme-account}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: user-manager}
subjects: [{kind: User, name: boss@acme.example}]
"#;

/// `authorizer` asks the RBAC authorizer about the requester (a custom verb here), in the
/// namespace the expression names; `namespaceObject` is the request's namespace.
#[tokio::test]
async fn the_authorizer_variable_answers_for_the_requester() {
    let fake = FakeApiServer::start().await;
    namespace(&fake, "acme-account").await;
    namespace(&fake, "globex-account").await;
    fake.apply_manifests(BY_AUTHORIZER).unwrap();
    users(fake.client()).create(&PostParams::default(), &user("jdoe")).await.unwrap();
    let roles = |roles: Value| Patch::Merge(json!({ "spec": { "roles": roles } }));

    let jane = users(fake.client_as("jane@acme.example"));
    let s = api_err(jane.patch("acme-jdoe", &PatchParams::default(), &roles(json!(["AccountAdmin"]))).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert!(s.message.ends_with("denied request: spec.roles: jane@acme.example may not manage users in acme-account"), "{}", s.message);
    jane.patch("acme-jdoe", &PatchParams::default(), &Patch::Merge(json!({"spec": {"firstName": "Janet"}}))).await.expect("not roles");

    let boss = users(fake.client_as("boss@acme.example"));
    boss.patch("acme-jdoe", &PatchParams::default(), &roles(json!(["Analyst"]))).await.expect("manage in acme-account");
    users(fake.client()).patch("acme-jdoe", &PatchParams::default(), &roles(json!(["AccountAdmin"]))).await.expect("system:masters");
    // The Role grants `manage` in acme-account only.
    let globex: Api<DynamicObject> = Api::namespaced_with(
        fake.client(),
        "globex-account",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "TenantUser")),
    );
    globex.create(&PostParams::default(), &user("jdoe")).await.unwrap();
    let in_globex = Api::<DynamicObject>::namespaced_with(
        fake.client_as("boss@acme.example"),
        "globex-account",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "TenantUser")),
    );
    let s = api_err(in_globex.patch("acme-jdoe", &PatchParams::default(), &roles(json!(["Agent"]))).await);
    assert!(s.message.contains("may not manage users in globex-account"), "{}", s.message);
}

const PROTECTED: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: protected}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector: {matchExpressions: [{key: owner, operator: Exists}]}
    resourceRules:
      - {apiGroups: [""], apiVersions: ["*"], operations: ["CREATE", "UPDATE", "DELETE"], resources: ["configmaps"]}
  validations:
    - expression: "oldObject == null || !has(oldObject.metadata.labels) || !('locked' in oldObject.metadata.labels)"
      reason: Forbidden
      messageExpression: "'locked by ' + namespaceObject.metadata.labels['owner'] + ' (' + request.operation + ', object is ' + (object == null ? 'null' : 'set') + ')'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: protected}
spec: {policyName: protected, validationActions: [Deny]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cm-editor}
rules: [{apiGroups: [""], resources: ["configmaps"], verbs: ["get", "patch", "create", "delete"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cm-editor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cm-editor}
subjects: [{kind: User, name: mallory}]
"#;

#[tokio::test]
async fn delete_requests_are_admitted_with_the_old_object_and_the_namespace_object() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::DeleteParams;
    let fake = FakeApiServer::start().await;
    Api::<Namespace>::all(fake.client())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "guarded", "labels": {"owner": "ops"}}})).unwrap(),
        )
        .await
        .unwrap();
    namespace(&fake, "free").await;
    fake.apply_manifests(PROTECTED).unwrap();
    for ns in ["guarded", "free"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c", "labels": {"locked": "yes"}}})).unwrap();
        Api::<ConfigMap>::namespaced(fake.client(), ns).create(&PostParams::default(), &cm).await.unwrap();
    }
    let mallory = fake.client_as("mallory");
    let guarded: Api<ConfigMap> = Api::namespaced(mallory.clone(), "guarded");
    let status = api_err(guarded.delete("c", &DeleteParams::default()).await);
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "configmaps \"c\" is forbidden: ValidatingAdmissionPolicy 'protected' with binding 'protected' denied request: locked by ops (DELETE, object is null)"
    );
    let status = api_err(guarded.patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await);
    assert!(status.message.ends_with("locked by ops (UPDATE, object is set)"), "{}", status.message);
    assert!(fake.object("v1", "ConfigMap", "guarded", "c").is_some(), "the refused delete deleted nothing");
    // A dry run is admitted the same way.
    let dry = DeleteParams { dry_run: true, ..DeleteParams::default() };
    assert_eq!(api_err(guarded.delete("c", &dry).await).code, 403);
    // Outside the namespaceSelector, and for the fake's own administrator's setup, nothing is refused.
    Api::<ConfigMap>::namespaced(mallory, "free").delete("c", &DeleteParams::default()).await.expect("unselected namespace");
    // The administrator is subject to policies too (as on the real server).
    assert_eq!(api_err(Api::<ConfigMap>::namespaced(fake.client(), "guarded").delete("c", &DeleteParams::default()).await).code, 403);
}

/// Label keys are map keys: CEL sees `example.com/owner` verbatim (kube's own evaluator would
/// escape it to `example__dot__com__slash__owner`, which the real server does not).
#[tokio::test]
async fn label_keys_with_dots_and_slashes_are_seen_verbatim() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let fake = FakeApiServer::start().await;
    Api::<Namespace>::all(fake.client())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n", "labels": {"example.com/allowed": "a.b"}}})).unwrap(),
        )
        .await
        .unwrap();
    fake.apply_manifests(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: reserved}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}]
  validations:
    - expression: "!has(object.metadata.labels) || !object.metadata.labels.exists(k, k.startsWith('example.com/'))"
      message: reserved prefix
    - expression: "!has(object.data) || object.data.all(k, k in namespaceObject.metadata.labels['example.com/allowed'].split('.'))"
      messageExpression: "'allowed keys: ' + namespaceObject.metadata.labels['example.com/allowed'].split('.').join(', ')"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: reserved}
spec: {policyName: reserved, validationActions: [Deny]}
"#,
    )
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), "n");
    let cm = |name: &str, labels: Value, data: Value| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data})).unwrap()
    };
    cms.create(&PostParams::default(), &cm("ok", json!({"app": "x"}), json!({"a": "1"}))).await.expect("allowed");
    let status = api_err(cms.create(&PostParams::default(), &cm("forged", json!({"example.com/owner": "x"}), json!({}))).await);
    assert!(status.message.ends_with("denied request: reserved prefix"), "{}", status.message);
    let status = api_err(cms.create(&PostParams::default(), &cm("extra", json!({}), json!({"c": "1"}))).await);
    assert!(status.message.ends_with("denied request: allowed keys: a, b"), "{}", status.message);
}

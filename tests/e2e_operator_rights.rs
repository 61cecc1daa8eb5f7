//! Issue 20 §6: the operator's own rights end at tenant namespaces. Acting as the operator's
//! ServiceAccount (with `deploy/`'s RBAC and admission policies), on the fake and on a real API
//! server:
//!
//! - what RBAC answers (`kubectl auth can-i`: a SubjectAccessReview on a real server, the
//!   fake's authorizer on the fake): no Secret anywhere but in tenant namespaces, no
//!   StatefulSets, Services or RoleBindings in `kube-system` or in a namespace that is not a
//!   tenant's; the grant's RoleBinding name and Namespace deletion stay `yes` (RBAC cannot name
//!   namespaces), and
//! - what the API server does with the requests: the operator-scope admission policy refuses
//!   what RBAC allows outside the operator's namespaces (deleting or labelling a namespace it did
//!   not create, its grant in `kube-system`), while a tenant is still provisioned end to end and
//!   the operator may still delete its own namespaces.
//!
//! Deletions are sent as dry runs: admission judges them all the same, and nothing is lost if
//! a defence is missing.

mod support;

use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    core::v1::{Namespace, Secret},
    rbac::v1::RoleBinding,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Api, Client,
};
use serde_json::json;
use support::{e2e::operator_user, fixtures::acme_tenant, fixtures::ready, scenario::Scenario};
use tenant_operator::config::DEFAULT_NAMESPACE_ROLE;

/// One question to the authorizer about the operator's ServiceAccount.
struct Ask<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
}

fn ask<'a>(verb: &'a str, group: &'a str, resource: &'a str, namespace: &'a str, name: &'a str) -> Ask<'a> {
    Ask { verb, group, resource, namespace, name }
}

/// What `kubectl auth can-i --as system:serviceaccount:tenant-operator:tenant-operator` answers.
async fn can_i(s: &Scenario, q: &Ask<'_>) -> bool {
    if let Some(fake) = s.fake() {
        let operator = fake_apiserver::UserInfo::service_account("tenant-operator", "tenant-operator");
        return fake.allows(&operator, q.verb, q.group, q.resource, q.namespace, q.name);
    }
    let (resource, subresource) = match q.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_string())),
        None => (q.resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(operator_user()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:tenant-operator".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(q.verb.into()),
                group: Some(q.group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: Some(q.namespace.into()).filter(|ns: &String| !ns.is_empty()),
                name: Some(q.name.into()).filter(|name: &String| !name.is_empty()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(s.client()).create(&PostParams::default(), &review).await.expect("SubjectAccessReview");
    answer.status.is_some_and(|status| status.allowed)
}

fn describe(q: &Ask<'_>) -> String {
    let scope = if q.namespace.is_empty() { "cluster-wide".to_string() } else { format!("in {}", q.namespace) };
    let name = if q.name.is_empty() { String::new() } else { format!(" named {}", q.name) };
    format!("{} {}/{}{name} {scope}", q.verb, if q.group.is_empty() { "core" } else { q.group }, q.resource)
}

/// A namespace that is not a tenant's, made by the administrator.
async fn foreign_namespace(s: &Scenario, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    s.create(&ns).await.expect("create a namespace that is not a tenant's");
}

fn refused_by_policy(result: Result<impl std::fmt::Debug, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 && status.message.contains("tenant-operator-scope.tenancy.platform.dev") => {}
        other => panic!("{what}: expected the operator-scope policy to refuse, got {other:?}"),
    }
}

fn refused_by_rbac(result: Result<impl std::fmt::Debug, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 && !status.message.contains("ValidatingAdmissionPolicy") => {}
        other => panic!("{what}: expected RBAC to refuse (403), got {other:?}"),
    }
}

/// `kubectl auth can-i` as the operator: no for every Secret in the cluster and for workloads,
/// Services and RoleBindings outside tenant namespaces; yes inside the namespaces it created.
#[tokio::test]
async fn the_operators_rbac_answers_no_outside_tenant_namespaces() {
    let s = Scenario::start().await;
    let slug = s.slug("rights");
    let other = format!("{slug}-elsewhere");
    foreign_namespace(&s, &other).await;

    // Outside tenant namespaces (asked first: they hold whatever the operator has done).
    let mut outside: Vec<(Ask<'_>, bool)> = vec![
        // Secrets: never cluster-wide.
        (ask("list", "", "secrets", "", ""), false),
        (ask("watch", "", "secrets", "", ""), false),
        // Only the operator's own admin Secret in its namespace, by name.
        (ask("get", "", "secrets", "tenant-operator", "postgres-admin"), true),
        // What RBAC cannot narrow (the operator-scope policy refuses it: see the next test): the
        // grant's name in any namespace, and deleting any namespace.
        (ask("create", "rbac.authorization.k8s.io", "rolebindings", "kube-system", DEFAULT_NAMESPACE_ROLE), true),
        (ask("delete", "", "namespaces", "", "kube-system"), true),
    ];
    for ns in ["kube-system", "default", "tenant-operator", other.as_str()] {
        outside.push((ask("get", "", "secrets", ns, "anything"), false));
        outside.push((ask("list", "", "secrets", ns, ""), false));
        for (group, resource) in [
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "roles"),
            ("apps", "statefulsets"),
            ("", "services"),
            ("", "configmaps"),
            ("", "secrets"),
            ("networking.k8s.io", "ingresses"),
        ] {
            outside.push((ask("create", group, resource, ns, ""), false));
        }
        outside.push((ask("delete", "rbac.authorization.k8s.io", "rolebindings", ns, "anything"), false));
        outside.push((ask("patch", "apps", "statefulsets", ns, "anything"), false));
        // The role-table ClusterRoles: bound only in tenant namespaces.
        outside.push((ask("bind", "rbac.authorization.k8s.io", "clusterroles", ns, "tenancy:account-admin"), false));
    }
    assert_answers(&s, &outside).await;

    // Inside the namespaces it created, what it needs (and still no list of Secrets).
    s.create_tenant(&acme_tenant(&slug, json!({"environments": ["dev"]}))).await;
    s.wait_tenant(&slug, ready).await;
    let (dev, account) = (format!("{slug}-dev"), format!("{slug}-account"));
    let mut inside: Vec<(Ask<'_>, bool)> = vec![(ask("create", "apps", "statefulsets", &dev, ""), true)];
    for ns in [dev.as_str(), account.as_str()] {
        inside.push((ask("get", "", "secrets", ns, "x"), true));
        inside.push((ask("create", "rbac.authorization.k8s.io", "rolebindings", ns, ""), true));
        inside.push((ask("bind", "rbac.authorization.k8s.io", "clusterroles", ns, "tenancy:viewer"), true));
        inside.push((ask("list", "", "secrets", ns, ""), false));
    }
    assert_answers(&s, &inside).await;
    s.cleanup().await;
}

async fn assert_answers(s: &Scenario, questions: &[(Ask<'_>, bool)]) {
    let mut wrong = Vec::new();
    for (q, want) in questions {
        let got = can_i(s, q).await;
        if got != *want {
            wrong.push(format!("  {}: {} (want {})", describe(q), if got { "yes" } else { "no" }, if *want { "yes" } else { "no" }));
        }
    }
    assert!(wrong.is_empty(), "kubectl auth can-i as the operator's ServiceAccount:\n{}", wrong.join("\n"));
}

/// The requests themselves, as the operator's ServiceAccount: RBAC refuses Secrets and writes
/// outside tenant namespaces; the operator-scope policy refuses what RBAC cannot narrow.
#[tokio::test]
async fn outside_its_namespaces_the_operators_requests_are_refused() {
    let s = Scenario::start().await;
    let slug = s.slug("reach");
    let other = format!("{slug}-elsewhere");
    foreign_namespace(&s, &other).await;
    s.create_tenant(&acme_tenant(&slug, json!({"environments": ["dev"], "database": {"provider": "statefulset"}}))).await;
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;
    let dev = format!("{slug}-dev");
    let operator: Client = s.operator_client();
    let dry_delete = DeleteParams { dry_run: true, ..DeleteParams::default() };

    // Secrets: not across the cluster, not in kube-system; the tenant's own, by name.
    refused_by_rbac(Api::<Secret>::all(operator.clone()).list(&ListParams::default()).await, "list Secrets -A");
    refused_by_rbac(Api::<Secret>::namespaced(operator.clone(), "kube-system").get_opt("anything").await, "get a Secret in kube-system");
    let credentials = format!("{slug}-db-credentials");
    assert!(Api::<Secret>::namespaced(operator.clone(), &dev).get_metadata_opt(&credentials).await.expect("its own Secret").is_some());

    // The grant in a namespace that is not a tenant's: RBAC allows the name, the policy refuses.
    for ns in ["kube-system", other.as_str()] {
        let grant: RoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": DEFAULT_NAMESPACE_ROLE, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DEFAULT_NAMESPACE_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant-operator", "namespace": "tenant-operator"}],
        }))
        .expect("rolebinding");
        let params = PatchParams { dry_run: true, ..PatchParams::apply("tenant-operator").force() };
        let result =
            Api::<RoleBinding>::namespaced(operator.clone(), ns).patch(DEFAULT_NAMESPACE_ROLE, &params, &Patch::Apply(&grant)).await;
        refused_by_policy(result, &format!("the grant in {ns}"));
        // Any other binding: RBAC.
        let mut other_binding = grant.clone();
        other_binding.metadata.name = Some("anything".into());
        let result = Api::<RoleBinding>::namespaced(operator.clone(), ns)
            .create(&PostParams { dry_run: true, ..PostParams::default() }, &other_binding)
            .await;
        refused_by_rbac(result, &format!("a RoleBinding in {ns}"));
    }

    // A namespace it did not create: neither deleted nor labelled as a tenant's (kube-system
    // itself is kept by the NamespaceLifecycle plugin from everyone; labelling it first would
    // give the operator its grant there).
    let namespaces = Api::<Namespace>::all(operator.clone());
    refused_by_policy(namespaces.delete(&other, &dry_delete).await, &format!("delete namespace {other}"));
    for ns in ["kube-system", other.as_str()] {
        let label = json!({"metadata": {"labels": {"tenancy.platform.dev/tenant": slug},
                                         "annotations": {"tenancy.platform.dev/tenant-uid": "forged"}}});
        let params = PatchParams { dry_run: true, ..PatchParams::default() };
        refused_by_policy(namespaces.patch(ns, &params, &Patch::Merge(&label)).await, &format!("label namespace {ns}"));
    }
    // Nor a namespace created without its label and stamp.
    let bare: Namespace = serde_json::from_value(json!({"metadata": {"name": format!("{slug}-bare")}})).expect("namespace");
    refused_by_policy(namespaces.create(&PostParams { dry_run: true, ..PostParams::default() }, &bare).await, "create a bare namespace");

    // Its own namespaces remain its to delete (a dry run: the tenant stays).
    namespaces.delete(&dev, &dry_delete).await.expect("the operator may delete a namespace it created");
    assert!(Api::<Namespace>::all(s.client()).get_opt(&other).await.expect("get").is_some());
    s.cleanup().await;
}

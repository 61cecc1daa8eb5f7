//! Checks on the shipped manifests: `deploy/` (kustomize), `charts/tenant-operator` (Helm) and
//! the Dockerfile.
//!
//! Copies kept in step with their sources (refresh them with
//! `TENANT_OPERATOR_UPDATE_MANIFESTS=1 cargo test --test packaging`):
//! - `deploy/crds/*` and `charts/tenant-operator/files/crds/*` = `crds/*`
//! - `deploy/config/config.yaml` = `examples/config.yaml`
//! - `deploy/rbac/tenancy-clusterroles.yaml` and its chart copy = `system_cluster_roles()`
//! - `charts/tenant-operator/files/aggregated-clusterroles.yaml` = `deploy/rbac/aggregated-clusterroles.yaml`
//! - `charts/tenant-operator/files/tenantuser-self-service-policy.yaml` = `deploy/admission/tenantuser-self-service-policy.yaml`
//! - `charts/tenant-operator/files/tenant-namespace-policies.yaml` = `deploy/admission/tenant-namespace-policies.yaml`
//!
//! The chart is compared with `deploy/` by rendering it with Helm's own engine through
//! `scripts/render-chart.py` (PyPI `helm-python-sdk`), and `deploy/` is built with
//! `kubectl kustomize`. Where those tools are missing the comparisons are skipped with a
//! message, unless `CI` or `TENANT_OPERATOR_REQUIRE_RENDERERS` is set: then a missing tool fails
//! the test, so CI never passes without having rendered the chart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{json, Value};
use tenant_operator::config::Config;
use tenant_operator::desired::rbac::{system_cluster_roles, SYSTEM_CLUSTER_ROLES};

const NAME_LABEL: &str = "app.kubernetes.io/name";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn update_mode() -> bool {
    std::env::var("TENANT_OPERATOR_UPDATE_MANIFESTS").is_ok_and(|v| v == "1")
}

/// Whether a missing renderer (Helm's engine, kubectl) must fail rather than skip.
fn renderers_required() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("TENANT_OPERATOR_REQUIRE_RENDERERS")
}

/// Skips a check whose tool is missing, or fails it where renderers are required.
fn skip_or_fail(why: String) {
    assert!(!renderers_required(), "{why} (required because CI or TENANT_OPERATOR_REQUIRE_RENDERERS is set)");
    eprintln!("SKIPPED: {why}");
}

/// Every non-empty YAML document of `text`, as JSON values.
fn docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .map(canonical_numbers)
        .collect()
}

fn yaml(text: &str, what: &str) -> Value {
    canonical_numbers(serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}")))
}

/// `100000.0` and `100000` are the same number to the API server, but not to `Value`'s `==`;
/// the generated CRDs write floats where Helm and kustomize write integers.
fn canonical_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(canonical_numbers).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, canonical_numbers(v))).collect()),
        other => other,
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn key(obj: &Value) -> String {
    format!("{}/{}/{}", str_at(obj, "/kind"), str_at(obj, "/metadata/namespace"), str_at(obj, "/metadata/name"))
}

/// Asserts `copy` has the same bytes as `source`, or rewrites it in update mode.
fn assert_copy(source: &str, copy: &str) {
    let want = read(source);
    let copy_path = root().join(copy);
    if update_mode() {
        std::fs::write(&copy_path, &want).unwrap_or_else(|e| panic!("write {copy}: {e}"));
        return;
    }
    assert!(read(copy) == want, "{copy} differs from {source}; run TENANT_OPERATOR_UPDATE_MANIFESTS=1 cargo test --test packaging");
}

fn kustomization() -> Value {
    yaml(&read("deploy/kustomization.yaml"), "deploy/kustomization.yaml")
}

fn crds_kustomization() -> Value {
    yaml(&read("deploy/crds/kustomization.yaml"), "deploy/crds/kustomization.yaml")
}

/// What `kubectl apply -k deploy/crds` applies.
fn crd_objects() -> Vec<Value> {
    string_list(&crds_kustomization(), "/resources")
        .iter()
        .flat_map(|file| docs(&read(Path::new("deploy/crds").join(file)), file))
        .collect()
}

fn string_list(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// What `kubectl apply -k deploy/` applies, built without kustomize: the listed resources plus
/// the generated ConfigMap (named without kustomize's hash suffix).
fn deploy_objects() -> Vec<Value> {
    let k = kustomization();
    let mut objects = Vec::new();
    for file in string_list(&k, "/resources") {
        objects.extend(docs(&read(Path::new("deploy").join(&file)), &file));
    }
    for generator in k.pointer("/configMapGenerator").and_then(Value::as_array).into_iter().flatten() {
        let mut data = serde_json::Map::new();
        for entry in string_list(generator, "/files") {
            let (key, file) = entry.split_once('=').unwrap_or((&entry, &entry));
            data.insert(key.to_owned(), Value::String(read(Path::new("deploy").join(file))));
        }
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": generator["name"],
                "namespace": generator["namespace"],
                "labels": generator.pointer("/options/labels").cloned().unwrap_or(json!({})),
            },
            "data": data,
        }));
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects.iter().find(|o| str_at(o, "/kind") == kind && str_at(o, "/metadata/name") == name).unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn yaml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_deploy_file_parses_and_is_listed() {
    let deploy = root().join("deploy");
    let mut files = Vec::new();
    yaml_files_under(&deploy, &mut files);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let parsed = docs(&text, &file.display().to_string());
        assert!(!parsed.is_empty(), "{} is empty", file.display());
    }

    let k = kustomization();
    let mut listed: BTreeSet<String> = string_list(&k, "/resources").into_iter().collect();
    for generator in k.pointer("/configMapGenerator").and_then(Value::as_array).into_iter().flatten() {
        for entry in string_list(generator, "/files") {
            let file = entry.split_once('=').map_or(entry.as_str(), |(_, f)| f);
            listed.insert(file.to_owned());
        }
    }
    // A component is listed by its own kustomization.
    let component = "components/bind-any-clusterrole";
    let ck = yaml(&read(format!("deploy/{component}/kustomization.yaml")), "component");
    assert_eq!(str_at(&ck, "/kind"), "Component");
    for file in string_list(&ck, "/resources") {
        listed.insert(format!("{component}/{file}"));
    }
    for patch in ck.pointer("/patches").and_then(Value::as_array).into_iter().flatten() {
        listed.insert(format!("{component}/{}", str_at(patch, "/path")));
    }
    listed.insert(format!("{component}/kustomization.yaml"));
    listed.insert("kustomization.yaml".to_owned());
    for file in string_list(&crds_kustomization(), "/resources") {
        listed.insert(format!("crds/{file}"));
    }
    listed.insert("crds/kustomization.yaml".to_owned());

    let present: BTreeSet<String> =
        files.iter().filter_map(|f| f.strip_prefix(&deploy).ok()).map(|f| f.to_string_lossy().into_owned()).collect();
    assert_eq!(present, listed, "files in deploy/ vs files the kustomization uses");
}

#[test]
fn every_object_is_labelled_and_namespaced_objects_sit_in_the_operator_namespace() {
    let cluster_scoped = [
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    for obj in deploy_objects() {
        let kind = str_at(&obj, "/kind");
        if kind != "CustomResourceDefinition" {
            assert_eq!(
                obj.pointer("/metadata/labels").and_then(|l| l.get(NAME_LABEL)).and_then(Value::as_str),
                Some("tenant-operator"),
                "{} lacks {NAME_LABEL}",
                key(&obj)
            );
        }
        if cluster_scoped.contains(&kind) {
            assert!(obj.pointer("/metadata/namespace").is_none(), "{}", key(&obj));
        } else {
            assert_eq!(str_at(&obj, "/metadata/namespace"), "tenant-operator", "{}", key(&obj));
        }
    }
}

#[test]
fn copies_equal_their_sources() {
    for crd in ["tenants.yaml", "tenantusers.yaml"] {
        assert_copy(&format!("crds/{crd}"), &format!("deploy/crds/{crd}"));
        assert_copy(&format!("crds/{crd}"), &format!("charts/tenant-operator/files/crds/{crd}"));
    }
    assert_copy("examples/config.yaml", "deploy/config/config.yaml");
    assert_copy("deploy/rbac/tenancy-clusterroles.yaml", "charts/tenant-operator/files/tenancy-clusterroles.yaml");
    assert_copy("deploy/rbac/aggregated-clusterroles.yaml", "charts/tenant-operator/files/aggregated-clusterroles.yaml");
    assert_copy("deploy/admission/tenantuser-self-service-policy.yaml", "charts/tenant-operator/files/tenantuser-self-service-policy.yaml");
    assert_copy("deploy/admission/tenant-namespace-policies.yaml", "charts/tenant-operator/files/tenant-namespace-policies.yaml");
    assert_copy("deploy/admission/operator-scope-policy.yaml", "charts/tenant-operator/files/operator-scope-policy.yaml");
    // Every CRD in crds/ is shipped, by deploy/crds.
    let shipped: BTreeSet<String> = string_list(&crds_kustomization(), "/resources").into_iter().collect();
    let sources: BTreeSet<String> = std::fs::read_dir(root().join("crds"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(shipped, sources);
}

#[test]
fn shipped_configuration_is_accepted_by_the_operator() {
    let text = read("deploy/config/config.yaml");
    if let Err(e) = Config::parse(&text, "deploy/config/config.yaml") {
        panic!("{e}");
    }
    let values = yaml(&read("charts/tenant-operator/values.yaml"), "chart values.yaml");
    assert_eq!(
        values["config"],
        yaml(&read("examples/config.yaml"), "examples/config.yaml"),
        "the chart's default `config` must be examples/config.yaml"
    );
}

#[test]
fn tenancy_cluster_roles_match_the_code() {
    let path = "deploy/rbac/tenancy-clusterroles.yaml";
    let mut generated = String::from(
        "# The role-table ClusterRoles of SPEC §3, generated from src/desired/rbac.rs by\n\
         # `TENANT_OPERATOR_UPDATE_MANIFESTS=1 cargo test --test packaging`. Do not edit.\n",
    );
    for mut role in system_cluster_roles() {
        let labels = role.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(NAME_LABEL.to_owned(), "tenant-operator".to_owned());
        labels.insert("app.kubernetes.io/instance".to_owned(), "tenant-operator".to_owned());
        let doc = serde_yaml::to_string(&role).unwrap_or_else(|e| panic!("{e}"));
        generated.push_str("---\n");
        generated.push_str(&doc);
    }
    if update_mode() {
        std::fs::write(root().join(path), &generated).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root().join("charts/tenant-operator/files/tenancy-clusterroles.yaml"), &generated).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        docs(&read(path), path),
        docs(&generated, "generated"),
        "{path} is stale; run TENANT_OPERATOR_UPDATE_MANIFESTS=1 cargo test --test packaging"
    );
    let objects = deploy_objects();
    for name in SYSTEM_CLUSTER_ROLES {
        find(&objects, "ClusterRole", name);
    }
}

fn rules_of(role: &Value) -> Vec<Value> {
    role.pointer("/rules").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Per (API group, resource): the verbs a role grants, each with the names `resourceNames`
/// narrow it to (empty: any).
type Granted = BTreeMap<(String, String), BTreeSet<(String, Vec<String>)>>;

/// What `role` grants. No wildcards anywhere.
fn granted_by(role: &Value) -> Granted {
    let mut granted = Granted::new();
    for rule in rules_of(role) {
        for field in ["/apiGroups", "/resources", "/verbs", "/resourceNames"] {
            assert!(!string_list(&rule, field).iter().any(|s| s.contains('*')), "wildcard in {field} of {rule}");
        }
        let mut names = string_list(&rule, "/resourceNames");
        names.sort();
        for group in string_list(&rule, "/apiGroups") {
            for resource in string_list(&rule, "/resources") {
                for verb in string_list(&rule, "/verbs") {
                    granted.entry((group.clone(), resource.clone())).or_default().insert((verb, names.clone()));
                }
            }
        }
    }
    granted
}

fn grants(want: Vec<(&str, &str, &[&str], &[&str])>) -> Granted {
    let mut out = Granted::new();
    for (group, resource, verbs, names) in want {
        let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        for verb in verbs {
            out.entry((group.to_owned(), resource.to_owned())).or_default().insert(((*verb).to_owned(), names.clone()));
        }
    }
    out
}

/// Issue 20 §6: cluster-wide, the operator reads the kinds it manages and writes only its
/// custom resources, Namespaces, Events and its grant (one RoleBinding name, `bind` on one
/// ClusterRole); no Secrets at all.
#[test]
fn operator_cluster_role_is_least_privilege() {
    let objects = deploy_objects();
    let role = find(&objects, "ClusterRole", "tenant-operator");
    let read = ["get", "list", "watch"];
    let grant = [tenant_operator::config::DEFAULT_NAMESPACE_ROLE];
    let mut want: Vec<(&str, &str, &[&str], &[&str])> = vec![
        ("tenancy.platform.dev", "tenants", &["get", "list", "watch", "patch"], &[]),
        // No `update`: the self-service Roles grant `patch` only.
        ("tenancy.platform.dev", "tenantusers", &["get", "list", "watch", "patch"], &[]),
        ("tenancy.platform.dev", "tenants/status", &["patch"], &[]),
        ("tenancy.platform.dev", "tenantusers/status", &["patch"], &[]),
        ("", "namespaces", &["get", "list", "watch", "create", "patch", "delete"], &[]),
        ("events.k8s.io", "events", &["create", "patch"], &[]),
        ("rbac.authorization.k8s.io", "clusterroles", &read, &[]),
        ("rbac.authorization.k8s.io", "clusterroles", &["bind"], &grant),
        ("rbac.authorization.k8s.io", "rolebindings", &["create", "patch"], &grant),
        // The self-service admission policy and its binding, verified before self-edit.
        ("admissionregistration.k8s.io", "validatingadmissionpolicies", &read, &[]),
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", &read, &[]),
        // The Gateways the configuration names: watched by name, never written.
        ("gateway.networking.k8s.io", "gateways", &["list", "watch"], &[]),
    ];
    for (group, resource) in [
        ("", "configmaps"),
        ("", "services"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("", "persistentvolumeclaims"),
        ("apps", "statefulsets"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "networkpolicies"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("postgresql.cnpg.io", "clusters"),
    ] {
        want.push((group, resource, &read, &[]));
    }
    assert_eq!(granted_by(role), grants(want));
    assert!(!rules_of(role).iter().any(|r| string_list(r, "/resources").iter().any(|x| x == "secrets")), "no Secret cluster-wide");
}

/// The operator's grant in the namespaces it creates: every write to a namespaced kind, the
/// Secrets by name, `bind` on the role-table ClusterRoles. Nothing to read: the cluster-wide
/// role reads.
#[test]
fn operator_grant_holds_the_writes_and_the_secrets() {
    let objects = deploy_objects();
    let role = find(&objects, "ClusterRole", tenant_operator::config::DEFAULT_NAMESPACE_ROLE);
    let mut want: Vec<(&str, &str, &[&str], &[&str])> = vec![
        ("", "secrets", &["get", "create", "patch"], &[]),
        ("", "persistentvolumeclaims", &["patch"], &[]),
        ("", "events", &["list"], &[]),
        ("rbac.authorization.k8s.io", "clusterroles", &["bind"], &SYSTEM_CLUSTER_ROLES),
    ];
    // Deleted only where the operator removes its own objects (applications, user bindings);
    // the rest goes only with its namespace.
    for (group, resource) in [
        ("networking.k8s.io", "ingresses"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ] {
        want.push((group, resource, &["create", "patch", "delete"], &[]));
    }
    for (group, resource) in [
        ("", "configmaps"),
        ("", "services"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("apps", "statefulsets"),
        ("networking.k8s.io", "networkpolicies"),
        ("postgresql.cnpg.io", "clusters"),
    ] {
        want.push((group, resource, &["create", "patch"], &[]));
    }
    assert_eq!(granted_by(role), grants(want));
    // Bound by the operator, never by the install.
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        assert!(
            !objects
                .iter()
                .any(|o| str_at(o, "/kind") == kind && str_at(o, "/roleRef/name") == tenant_operator::config::DEFAULT_NAMESPACE_ROLE),
            "deploy/ must not bind the grant itself"
        );
    }
}

/// What RBAC cannot narrow is refused by the operator-scope policy, which the operator checks
/// for; the deployment tells the operator its ServiceAccount and the grant's name.
#[test]
fn operator_scope_policy_and_grant_wiring() {
    use tenant_operator::admission::OPERATOR_SCOPE;
    let objects = deploy_objects();
    let policy = find(&objects, "ValidatingAdmissionPolicy", OPERATOR_SCOPE);
    assert_eq!(str_at(policy, "/spec/failurePolicy"), "Fail");
    assert_eq!(
        str_at(policy, "/spec/matchConditions/0/expression"),
        "request.userInfo.username == 'system:serviceaccount:tenant-operator:tenant-operator'"
    );
    let binding = find(&objects, "ValidatingAdmissionPolicyBinding", OPERATOR_SCOPE);
    assert_eq!(str_at(binding, "/spec/policyName"), OPERATOR_SCOPE);
    assert_eq!(string_list(binding, "/spec/validationActions"), ["Deny"]);
    assert!(tenant_operator::admission::required_policies(
        &tenant_operator::config::Config::load(&root().join("examples/config.yaml")).expect("config")
    )
    .contains(&OPERATOR_SCOPE));
    let d = find(&objects, "Deployment", "tenant-operator");
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    let var = |name: &str| env.as_array().into_iter().flatten().find(|e| e["name"] == name).cloned().unwrap_or_default();
    assert_eq!(var("SERVICE_ACCOUNT_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "spec.serviceAccountName");
    assert_eq!(var("TENANT_NAMESPACE_ROLE")["value"], tenant_operator::config::DEFAULT_NAMESPACE_ROLE);
}

#[test]
fn operator_namespace_role_covers_leases_and_the_admin_secret() {
    let objects = deploy_objects();
    let role = find(&objects, "Role", "tenant-operator");
    let rules = rules_of(role);
    let lease = rules.iter().find(|r| string_list(r, "/resources") == ["leases"]).unwrap_or_else(|| panic!("no lease rule"));
    assert_eq!(string_list(lease, "/apiGroups"), ["coordination.k8s.io"]);
    assert_eq!(string_list(lease, "/verbs"), ["get", "create", "update"]);

    let config = yaml(&read("deploy/config/config.yaml"), "config");
    let secret = rules.iter().find(|r| string_list(r, "/resources") == ["secrets"]).unwrap_or_else(|| panic!("no secret rule"));
    assert_eq!(string_list(secret, "/resourceNames"), [str_at(&config, "/database/external/adminSecret/name")]);
    assert_eq!(str_at(&config, "/database/external/adminSecret/namespace"), str_at(role, "/metadata/namespace"));
    let binding = find(&objects, "RoleBinding", "tenant-operator");
    assert_eq!(str_at(binding, "/roleRef/name"), "tenant-operator");
    assert_eq!(str_at(binding, "/subjects/0/name"), "tenant-operator");
    let binding = find(&objects, "ClusterRoleBinding", "tenant-operator");
    assert_eq!(str_at(binding, "/subjects/0/namespace"), "tenant-operator");
}

#[test]
fn deployment_runs_hardened_with_probes_and_downward_api() {
    let objects = deploy_objects();
    let d = find(&objects, "Deployment", "tenant-operator");
    assert_eq!(d.pointer("/spec/replicas"), Some(&json!(2)));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tenant-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");

    let args = string_list(c, "/args");
    assert_eq!(args[..3], ["run", "--config", "/etc/tenant-operator/config.yaml"]);
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/tenant-operator");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "tenant-operator-config");

    assert_eq!(c["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "http"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "http"}));
    assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());

    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?, e.pointer("/valueFrom/fieldRef/fieldPath")?.as_str()?)))
        .collect();
    assert_eq!(env.get("POD_NAME"), Some(&"metadata.name"));
    assert_eq!(env.get("POD_NAMESPACE"), Some(&"metadata.namespace"));

    let svc = find(&objects, "Service", "tenant-operator-metrics");
    assert_eq!(svc["spec"]["selector"], d["spec"]["selector"]["matchLabels"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn dockerfile_builds_locked_and_runs_as_nonroot() {
    let text = read("Dockerfile");
    for needle in
        ["FROM rust:1-bookworm AS build", "cargo build --release --locked", "FROM gcr.io/distroless/cc-debian12:nonroot", "USER 65532"]
    {
        assert!(text.contains(needle), "Dockerfile lacks {needle:?}");
    }
    // The plugin binary is built by the same `cargo build --release` and carried by the image.
    assert!(text.contains("echo 'fn main() {}' > src/kubectl_tenant.rs"), "the dependency layer needs the plugin's stub");
    assert!(text.contains("COPY --from=build /kubectl-tenant /usr/local/bin/kubectl-tenant"), "the image carries kubectl-tenant");
}

/// The krew manifest installs the binary Cargo builds, under the name `kubectl tenant` uses.
#[test]
fn the_krew_manifest_names_the_plugin_binary() {
    let manifest = yaml(&read("plugins/krew/tenant.yaml"), "plugins/krew/tenant.yaml");
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "tenant", "krew's name gives the command `kubectl tenant`");
    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    assert!(!platforms.is_empty());
    for platform in platforms {
        assert_eq!(platform["bin"], "kubectl-tenant");
    }
    let cargo = read("Cargo.toml");
    assert!(cargo.contains("name = \"kubectl-tenant\""), "Cargo.toml builds kubectl-tenant");
    let script = read("scripts/krew-package");
    for placeholder in ["{{VERSION}}", "{{OS}}", "{{ARCH}}", "{{URI}}", "{{SHA256}}"] {
        assert!(read("plugins/krew/tenant.yaml").contains(placeholder) && script.contains(placeholder), "{placeholder}");
    }
}

#[test]
fn chart_metadata_and_schema_agree_with_values() {
    let chart = yaml(&read("charts/tenant-operator/Chart.yaml"), "Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let values = yaml(&read("charts/tenant-operator/values.yaml"), "values.yaml");
    let schema: Value =
        serde_json::from_str(&read("charts/tenant-operator/values.schema.json")).unwrap_or_else(|e| panic!("values.schema.json: {e}"));
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default() };
    assert_eq!(keys(&values), keys(&schema["properties"]));
    assert_eq!(keys(&values["config"]), keys(&schema["properties"]["config"]["properties"]));
    assert_eq!(values["installCRDs"], true);
    assert_eq!(values["metrics"]["serviceMonitor"]["enabled"], false);
    assert_eq!(values["rbac"]["customRoles"]["bindAny"], false);

    let rules = yaml(&read("charts/tenant-operator/files/operator-rules.yaml"), "operator-rules.yaml");
    let objects = deploy_objects();
    assert_eq!(
        rules,
        find(&objects, "ClusterRole", "tenant-operator")["rules"],
        "charts/tenant-operator/files/operator-rules.yaml must equal the rules of deploy/rbac/operator-clusterrole.yaml"
    );
    let rules = yaml(&read("charts/tenant-operator/files/tenant-namespace-rules.yaml"), "tenant-namespace-rules.yaml");
    assert_eq!(
        rules,
        find(&objects, "ClusterRole", tenant_operator::config::DEFAULT_NAMESPACE_ROLE)["rules"],
        "charts/tenant-operator/files/tenant-namespace-rules.yaml must equal the rules of deploy/rbac/tenant-namespace-clusterrole.yaml"
    );
}

/// Removes what legitimately differs between Helm and kustomize output: Helm's bookkeeping
/// labels, annotations (checksum, resource policy) and the configuration's formatting.
fn normalise(mut obj: Value) -> Value {
    // deploy/crds are verbatim copies of crds/, without labels; the chart labels them.
    let crd = str_at(&obj, "/kind") == "CustomResourceDefinition";
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("annotations");
        let name = meta.get("labels").and_then(|l| l.get(NAME_LABEL)).cloned();
        meta.remove("labels");
        if let Some(name) = name.filter(|_| !crd) {
            meta.insert("labels".into(), json!({ NAME_LABEL: name }));
        }
    }
    if let Some(meta) = obj.pointer_mut("/spec/template/metadata").and_then(Value::as_object_mut) {
        meta.remove("annotations");
    }
    if let Some(config) = obj.pointer_mut("/data/config.yaml") {
        let parsed = yaml(config.as_str().unwrap_or(""), "config.yaml");
        *config = parsed;
    }
    obj
}

fn by_key(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects.into_iter().map(|o| (key(&o), normalise(o))).collect()
}

fn render_chart(extra_args: &[&str]) -> Option<String> {
    let output = Command::new("python3").arg(root().join("scripts/render-chart.py")).args(extra_args).output();
    match output {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) if o.status.code() == Some(3) => {
            skip_or_fail(format!("chart rendering needs `pip install helm-python-sdk` ({})", String::from_utf8_lossy(&o.stderr).trim()));
            None
        }
        Ok(o) => panic!("rendering the chart failed:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            skip_or_fail(format!("chart rendering needs python3: {e}"));
            None
        }
    }
}

#[test]
fn chart_default_rendering_equals_deploy() {
    let Some(rendered) = render_chart(&["--lint"]) else {
        return;
    };
    let chart = by_key(docs(&rendered, "rendered chart"));
    // The chart installs the CRDs too (installCRDs); deploy/ keeps them in deploy/crds.
    let mut deploy = by_key(deploy_objects().into_iter().chain(crd_objects()).collect());
    // Helm installs into a namespace it is given (`--create-namespace`); it does not own it.
    deploy.remove("Namespace//tenant-operator");

    let only_chart: Vec<_> = chart.keys().filter(|k| !deploy.contains_key(*k)).collect();
    let only_deploy: Vec<_> = deploy.keys().filter(|k| !chart.contains_key(*k)).collect();
    assert!(only_chart.is_empty() && only_deploy.is_empty(), "only in the chart: {only_chart:?}; only in deploy/: {only_deploy:?}");
    for (k, want) in &deploy {
        let got = &chart[k];
        assert!(
            got == want,
            "{k} differs\nchart:  {}\ndeploy: {}",
            serde_json::to_string_pretty(got).unwrap_or_default(),
            serde_json::to_string_pretty(want).unwrap_or_default()
        );
    }
}

#[test]
fn chart_options_render() {
    let Some(rendered) = render_chart(&[
        "--set-json",
        r#"{"installCRDs": false, "metrics": {"serviceMonitor": {"enabled": true}},
            "rbac": {"customRoles": {"names": ["flow-billing-editor"]}},
            "existingConfigMap": "my-config", "logFormat": "text",
            "config": {"database": {"external": {"adminSecret": {"namespace": "databases"}}}}}"#,
        "--name",
        "ops",
        "--namespace",
        "platform",
    ]) else {
        return;
    };
    let objects = docs(&rendered, "rendered chart");
    let kinds: Vec<&str> = objects.iter().map(|o| str_at(o, "/kind")).collect();
    assert!(!kinds.contains(&"CustomResourceDefinition"));
    assert!(objects.iter().all(|o| str_at(o, "/kind") != "ConfigMap" || str_at(o, "/metadata/name") != "ops-tenant-operator-config"));
    assert!(kinds.contains(&"ServiceMonitor"));
    let binding = find(&objects, "ValidatingAdmissionPolicyBinding", "tenantuser-self-service.tenancy.platform.dev");
    assert!(binding.pointer("/spec/paramRef").is_none(), "the policy has no parameter to keep in sync: {binding}");
    assert_eq!(string_list(binding, "/spec/validationActions"), ["Deny"]);
    // The namespace policies exempt this release's ServiceAccount, not the default one.
    let policy = find(&objects, "ValidatingAdmissionPolicy", tenant_operator::admission::OPERATOR_OBJECTS);
    let exempt = str_at(policy, "/spec/matchConditions/0/expression");
    assert!(exempt.contains("'system:serviceaccount:platform:ops-tenant-operator'"), "{exempt}");
    assert!(!exempt.contains("system:serviceaccount:tenant-operator:tenant-operator"), "{exempt}");
    // Custom roles are bound through the grant, in tenant namespaces only; the cluster-wide
    // role may bind (and create the RoleBinding of) this release's grant only.
    let grant = find(&objects, "ClusterRole", "ops-tenant-operator:tenant-namespace");
    assert!(rules_of(grant).iter().any(|r| string_list(r, "/resourceNames") == ["flow-billing-editor"]));
    let role = find(&objects, "ClusterRole", "ops-tenant-operator");
    assert!(!rules_of(role).iter().any(|r| string_list(r, "/resourceNames") == ["flow-billing-editor"]));
    let named: Vec<Vec<String>> = rules_of(role).iter().map(|r| string_list(r, "/resourceNames")).filter(|n| !n.is_empty()).collect();
    assert_eq!(named, [["ops-tenant-operator:tenant-namespace"], ["ops-tenant-operator:tenant-namespace"]]);
    let scope = find(&objects, "ValidatingAdmissionPolicy", tenant_operator::admission::OPERATOR_SCOPE);
    assert!(str_at(scope, "/spec/matchConditions/0/expression").contains("'system:serviceaccount:platform:ops-tenant-operator'"));
    let d = find(&objects, "Deployment", "ops-tenant-operator");
    assert_eq!(d.pointer("/spec/template/spec/volumes/0/configMap/name"), Some(&json!("my-config")));
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"].as_array().cloned().unwrap_or_default();
    assert!(env.iter().any(|e| e["name"] == "TENANT_NAMESPACE_ROLE" && e["value"] == "ops-tenant-operator:tenant-namespace"));
    assert!(string_list(&d["spec"]["template"]["spec"]["containers"][0], "/args").contains(&"text".to_owned()));
    let db = find(&objects, "Role", "ops-tenant-operator-db-admin");
    assert_eq!(str_at(db, "/metadata/namespace"), "databases");

    // Default rendering: the CRDs are installed and kept on uninstall.
    let Some(rendered) = render_chart(&[]) else {
        return;
    };
    let crds: Vec<Value> =
        docs(&rendered, "rendered chart").into_iter().filter(|o| str_at(o, "/kind") == "CustomResourceDefinition").collect();
    assert_eq!(crds.len(), 2);
    for crd in &crds {
        assert_eq!(str_at(crd, "/metadata/annotations/helm.sh~1resource-policy"), "keep");
        let source = format!("crds/{}.yaml", str_at(crd, "/spec/names/plural"));
        let mut want = yaml(&read(&source), &source);
        let mut got = crd.clone();
        for v in [&mut want, &mut got] {
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("annotations");
                m.remove("labels");
            }
        }
        assert!(got == want, "rendered CRD differs from {source}");
    }
}

#[test]
fn kustomize_build_matches_the_file_list() {
    let output = match Command::new("kubectl").args(["kustomize", "deploy"]).current_dir(root()).output() {
        Ok(o) => o,
        Err(e) => {
            skip_or_fail(format!("kubectl not available: {e}"));
            return;
        }
    };
    assert!(output.status.success(), "kubectl kustomize deploy failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let built: Vec<Value> = docs(&String::from_utf8_lossy(&output.stdout), "kustomize output")
        .into_iter()
        .map(|mut o| {
            // configMapGenerator appends a content hash to the name and to its references.
            for pointer in ["/metadata/name", "/spec/template/spec/volumes/0/configMap/name"] {
                if let Some(v) = o.pointer_mut(pointer) {
                    if v.as_str().is_some_and(|s| s.starts_with("tenant-operator-config-")) {
                        *v = json!("tenant-operator-config");
                    }
                }
            }
            o
        })
        .collect();
    let built = by_key(built);
    let mine = by_key(deploy_objects());
    assert_eq!(built.keys().collect::<Vec<_>>(), mine.keys().collect::<Vec<_>>());
    for (k, v) in &mine {
        assert!(&built[k] == v, "{k} differs between kustomize and the files");
    }
}

#[test]
fn kustomize_builds_the_crds_apart() {
    let output = match Command::new("kubectl").args(["kustomize", "deploy/crds"]).current_dir(root()).output() {
        Ok(o) => o,
        Err(e) => {
            skip_or_fail(format!("kubectl not available: {e}"));
            return;
        }
    };
    assert!(output.status.success(), "kubectl kustomize deploy/crds failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let built = by_key(docs(&String::from_utf8_lossy(&output.stdout), "kustomize output"));
    let mine = by_key(crd_objects());
    assert_eq!(built.keys().collect::<Vec<_>>(), mine.keys().collect::<Vec<_>>());
}

#[test]
fn deleting_the_operator_never_deletes_the_crds() {
    // `kubectl delete -k deploy/` deletes exactly what deploy/kustomization.yaml lists: a CRD
    // there would take every Tenant with it.
    let operator = deploy_objects();
    let kinds: BTreeSet<&str> = operator.iter().map(|o| str_at(o, "/kind")).collect();
    assert!(!kinds.contains("CustomResourceDefinition"), "deploy/ must not contain the CRDs: {kinds:?}");
    assert!(
        !string_list(&kustomization(), "/resources").iter().any(|r| r.starts_with("crds")),
        "deploy/kustomization.yaml must not include crds/ (install them with kubectl apply -k deploy/crds)"
    );
    let crds = crd_objects();
    assert_eq!(crds.len(), 2);
    for crd in &crds {
        assert_eq!(str_at(crd, "/kind"), "CustomResourceDefinition");
        assert!(crd.pointer("/metadata/namespace").is_none());
    }
    // Nothing but the CRDs in deploy/crds: no namespace, no generator to delete with them.
    let ck = crds_kustomization();
    let keys: BTreeSet<String> = ck.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    assert_eq!(keys, ["apiVersion", "kind", "resources"].map(str::to_owned).into_iter().collect());
}

#[test]
fn shipped_crds_carry_the_keep_annotations() {
    for crd in crd_objects() {
        let name = str_at(&crd, "/metadata/name").to_owned();
        assert_eq!(str_at(&crd, "/metadata/annotations/helm.sh~1resource-policy"), "keep", "{name}");
        assert_eq!(str_at(&crd, "/metadata/annotations/kustomize.toolkit.fluxcd.io~1prune"), "disabled", "{name}");
        let argo = str_at(&crd, "/metadata/annotations/argocd.argoproj.io~1sync-options");
        assert!(argo.contains("Prune=false") && argo.contains("Delete=false"), "{name}: {argo}");
    }
}

/// Verbs on `tenancy.platform.dev` resources granted by one ClusterRole.
fn tenancy_grants(role: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in rules_of(role) {
        assert_eq!(string_list(&rule, "/apiGroups"), ["tenancy.platform.dev"], "{rule}");
        assert!(string_list(&rule, "/resourceNames").is_empty(), "{rule}");
        for resource in string_list(&rule, "/resources") {
            granted.entry(resource).or_default().extend(string_list(&rule, "/verbs"));
        }
    }
    granted
}

#[test]
fn built_in_view_edit_and_admin_roles_see_tenants() {
    let objects = deploy_objects();
    let set = |verbs: &[&str]| -> BTreeSet<String> { verbs.iter().map(|v| (*v).to_owned()).collect() };
    let role = |name: &str, aggregate: &str| {
        let role = find(&objects, "ClusterRole", name);
        assert_eq!(
            str_at(role, &format!("/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-{aggregate}")),
            "true",
            "{name} must aggregate into {aggregate}"
        );
        tenancy_grants(role)
    };
    let read = set(&["get", "list", "watch"]);
    // TenantUsers hold people's names and email addresses: not for every viewer.
    let view = role("tenant-operator:aggregate-to-view", "view");
    assert_eq!(view, BTreeMap::from([("tenants".to_owned(), read.clone())]));

    // `edit` aggregates `view`, `admin` aggregates `edit`: each adds to the one below.
    let edit = role("tenant-operator:aggregate-to-edit", "edit");
    assert_eq!(edit["tenants"], set(&["create", "update", "patch"]), "edit must not delete Tenants");
    // `manage`: what the self-service admission policy asks before a user's roles change.
    assert_eq!(edit["tenantusers"], set(&["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "manage"]));
    let admin = role("tenant-operator:aggregate-to-admin", "admin");
    assert_eq!(admin, BTreeMap::from([("tenants".to_owned(), set(&["delete", "deletecollection"]))]));

    // Status belongs to the operator alone.
    for grants in [&view, &edit, &admin] {
        assert!(grants.keys().all(|r| !r.contains('/')), "{grants:?}");
    }
}

#[test]
fn a_disruption_budget_keeps_a_standby() {
    let objects = deploy_objects();
    let pdb = find(&objects, "PodDisruptionBudget", "tenant-operator");
    let deployment = find(&objects, "Deployment", "tenant-operator");
    assert_eq!(pdb["spec"]["selector"], deployment["spec"]["selector"]);
    assert_eq!(pdb.pointer("/spec/maxUnavailable"), Some(&json!(1)));
    assert!(pdb.pointer("/spec/minAvailable").is_none(), "minAvailable would block drains of a single replica");
    let replicas = deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    assert!(replicas >= 2, "one replica disrupted must leave a standby");
    // The operations guide mentions the budget: it must exist, and it does.
    assert!(read("docs/operations.md").contains("PodDisruptionBudget"));
}

#[test]
fn the_minimum_kubernetes_version_is_stated_everywhere() {
    let minimum = tenant_operator::kube_version::MINIMUM.to_string();
    let chart = yaml(&read("charts/tenant-operator/Chart.yaml"), "Chart.yaml");
    assert_eq!(chart["kubeVersion"], json!(format!(">={minimum}.0-0")), "Chart.yaml kubeVersion");
    assert!(read("README.md").contains(&format!("Kubernetes {minimum} or newer")), "README must state Kubernetes {minimum} or newer");
    assert!(read("docs/reference.md").contains(&format!("Kubernetes {minimum}")), "docs/reference.md must state the minimum");
}

#[test]
fn chart_is_usable_as_a_subchart_and_its_options_render() {
    // Helm hands a parent's `global` values to every subchart; the schema must accept them.
    let Some(rendered) =
        render_chart(&["--set-json", r#"{"global": {"imageRegistry": "registry.example.com", "labels": {"team": "platform"}}}"#])
    else {
        return;
    };
    assert!(!docs(&rendered, "rendered chart").is_empty());

    let Some(rendered) =
        render_chart(&["--set-json", r#"{"podDisruptionBudget": {"enabled": false}, "rbac": {"aggregateToDefaultRoles": false}}"#])
    else {
        return;
    };
    let objects = docs(&rendered, "rendered chart");
    let kinds: Vec<&str> = objects.iter().map(|o| str_at(o, "/kind")).collect();
    assert!(!kinds.contains(&"PodDisruptionBudget"), "{kinds:?}");
    assert!(!objects.iter().any(|o| str_at(o, "/metadata/name").starts_with("tenant-operator:aggregate-to")));

    let Some(rendered) = render_chart(&["--set-json", r#"{"podDisruptionBudget": {"maxUnavailable": "50%"}}"#]) else {
        return;
    };
    let objects = docs(&rendered, "rendered chart");
    assert_eq!(find(&objects, "PodDisruptionBudget", "tenant-operator")["spec"]["maxUnavailable"], "50%");

    // Unknown keys are still refused.
    let output = Command::new("python3")
        .arg(root().join("scripts/render-chart.py"))
        .args(["--set-json", r#"{"podDisruptionBudget": {"minAvailble": 1}}"#])
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(!output.status.success(), "a misspelt key must fail the schema");
}

/// Targets of the Markdown links `[text](target)` in `text`.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            links.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    links
}

#[test]
fn readme_and_docs_stand_alone() {
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    assert!(files.len() >= 4, "README.md and docs/*.md");
    let repo = root().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!text.contains("shared/SPEC"), "{} refers to the spec outside the repository", file.display());
        for link in markdown_links(&text) {
            let name = file.display();
            assert!(!link.starts_with("http://") && !link.starts_with("https://"), "{name}: external link {link}");
            let path = link.split('#').next().unwrap_or_default();
            if path.is_empty() {
                continue;
            }
            let base = file.parent().unwrap_or(&repo);
            let target = base.join(path).canonicalize().unwrap_or_else(|e| panic!("{name}: link {link} points nowhere: {e}"));
            assert!(target.starts_with(&repo), "{name}: link {link} leaves the repository");
        }
    }
}

/// The operator's port (health and `/metrics`, which names every tenant) is reachable only
/// from namespaces an administrator labelled: never from tenant workloads by default.
#[test]
fn only_labelled_namespaces_reach_the_operator_port() {
    let objects = deploy_objects();
    let policy = find(&objects, "NetworkPolicy", "tenant-operator");
    let deployment = find(&objects, "Deployment", "tenant-operator");
    assert_eq!(policy.pointer("/spec/podSelector/matchLabels"), deployment.pointer("/spec/selector/matchLabels"));
    assert_eq!(string_list(policy, "/spec/policyTypes"), ["Ingress"]);
    let rules = policy.pointer("/spec/ingress").and_then(Value::as_array).cloned().unwrap_or_default();
    assert_eq!(rules.len(), 1, "one ingress rule: {rules:?}");
    let peers = rules[0].pointer("/from").and_then(Value::as_array).cloned().unwrap_or_default();
    assert!(!peers.is_empty(), "a rule without `from` admits everyone");
    for peer in &peers {
        assert!(peer.get("ipBlock").is_none() && peer.get("podSelector").is_none(), "{peer}");
        let labels = peer.pointer("/namespaceSelector/matchLabels").and_then(Value::as_object);
        assert!(labels.is_some_and(|l| !l.is_empty()), "an empty namespace selector admits every namespace: {peer}");
    }
    assert_eq!(rules[0]["ports"], json!([{"port": "http", "protocol": "TCP"}]));
    let ports = deployment.pointer("/spec/template/spec/containers/0/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    assert!(ports.iter().any(|p| p["name"] == "http"), "the policy names the container port `http`: {ports:?}");

    let Some(rendered) = render_chart(&["--set-json", r#"{"networkPolicy": {"enabled": false}}"#]) else {
        return;
    };
    let objects = docs(&rendered, "rendered chart");
    assert!(objects.iter().all(|o| str_at(o, "/kind") != "NetworkPolicy"), "networkPolicy.enabled=false renders no policy");
}

/// `docs/operations.md`'s permission tables list exactly what the two ClusterRoles grant, as
/// (API group, resource, verb): the cluster-wide one and the operator's grant.
#[test]
fn the_operations_guide_lists_exactly_the_operator_permissions() {
    let guide = read("docs/operations.md");
    let section = guide.split("\n## Permissions\n").nth(1).expect("docs/operations.md has a Permissions section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let table = |heading: &str| -> BTreeSet<(String, String, String)> {
        let part = section.split("\n### ").find(|part| part.starts_with(heading)).unwrap_or_else(|| panic!("no ### {heading}"));
        let mut documented = BTreeSet::new();
        for line in part.lines().filter(|l| l.starts_with("| ")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() < 3 || cells[0] == "API group" {
                continue;
            }
            let group = if cells[0] == "core" { "" } else { cells[0].trim_matches('`') };
            for resource in cells[1].split(',').map(|r| r.trim().trim_matches('`')) {
                for verb in cells[2].split(',').map(str::trim) {
                    documented.insert((group.to_owned(), resource.to_owned(), verb.to_owned()));
                }
            }
        }
        documented
    };
    for (heading, file) in [
        ("Cluster-wide: ClusterRole `tenant-operator`", "deploy/rbac/operator-clusterrole.yaml"),
        ("In the namespaces it creates: ClusterRole `tenant-operator:tenant-namespace`", "deploy/rbac/tenant-namespace-clusterrole.yaml"),
    ] {
        let documented = table(heading);
        let role = yaml(&read(file), file);
        let mut granted = BTreeSet::new();
        for rule in rules_of(&role) {
            for group in string_list(&rule, "/apiGroups") {
                for resource in string_list(&rule, "/resources") {
                    for verb in string_list(&rule, "/verbs") {
                        granted.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
        let only_documented: Vec<_> = documented.difference(&granted).collect();
        let only_granted: Vec<_> = granted.difference(&documented).collect();
        assert!(
            only_documented.is_empty() && only_granted.is_empty(),
            "docs/operations.md \"{heading}\" vs {file}\nonly documented: {only_documented:?}\nonly granted: {only_granted:?}"
        );
    }
}

/// The shipped admission policies of the tenant namespace profile are the ones the operator
/// checks for, fail closed, deny, and the operator may read exactly them.
#[test]
fn namespace_policies_match_the_code() {
    use tenant_operator::admission::{IMAGE_PULL_POLICY, OPERATOR_OBJECTS, SERVICE_TYPES};
    let objects = docs(&read("deploy/admission/tenant-namespace-policies.yaml"), "tenant-namespace-policies.yaml");
    let names = |kind: &str| -> BTreeSet<String> {
        objects.iter().filter(|o| str_at(o, "/kind") == kind).map(|o| str_at(o, "/metadata/name").to_owned()).collect()
    };
    let want: BTreeSet<String> = [OPERATOR_OBJECTS, SERVICE_TYPES, IMAGE_PULL_POLICY].map(str::to_owned).into_iter().collect();
    assert_eq!(names("ValidatingAdmissionPolicy"), want);
    assert_eq!(names("ValidatingAdmissionPolicyBinding"), want);
    for o in &objects {
        match str_at(o, "/kind") {
            "ValidatingAdmissionPolicy" => assert_eq!(str_at(o, "/spec/failurePolicy"), "Fail", "{}", key(o)),
            _ => {
                assert_eq!(str_at(o, "/spec/policyName"), str_at(o, "/metadata/name"));
                assert_eq!(string_list(o, "/spec/validationActions"), ["Deny"]);
            }
        }
    }
    let policy = find(&objects, "ValidatingAdmissionPolicy", OPERATOR_OBJECTS);
    assert!(str_at(policy, "/spec/matchConditions/0/expression").contains("'system:serviceaccount:tenant-operator:tenant-operator'"));
    let deploy = deploy_objects();
    let role = find(&deploy, "ClusterRole", "tenant-operator");
    for name in &want {
        for resource in ["validatingadmissionpolicies", "validatingadmissionpolicybindings"] {
            let readable = rules_of(role).iter().any(|r| {
                string_list(r, "/apiGroups") == ["admissionregistration.k8s.io"]
                    && string_list(r, "/resources").iter().any(|x| x == resource)
                    && string_list(r, "/verbs").iter().any(|v| v == "get")
                    && (r.get("resourceNames").is_none() || string_list(r, "/resourceNames").contains(name))
            });
            assert!(readable, "the operator cannot get {resource} {name}");
        }
    }
}

//! The committed CRDs (`crds/*.yaml`) against the fake API server's admission: invalid
//! Tenants/TenantUsers are rejected with 422 naming the field, valid ones are accepted with
//! defaults, and the committed YAML matches what the Rust types generate. Also what `kubectl`
//! and GitOps tools read from the CRDs: a description on every field (`kubectl explain`), the
//! `-o wide` columns and the annotations that keep the CRDs from being pruned.

mod support;

use fake_apiserver::FakeApiServer;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::CustomResourceExt;
use serde_json::json;
use tenant_operator::types::{Tenant, TenantUser};

fn api(fake: &FakeApiServer, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", kind));
    Api::all_with(fake.client(), &ar)
}

/// TenantUsers live in an account namespace; this one is created for the test.
async fn users_api(fake: &FakeApiServer) -> Api<DynamicObject> {
    fake.apply_manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: acme-account}\n").expect("namespace");
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "TenantUser"));
    Api::namespaced_with(fake.client(), "acme-account", &ar)
}

fn doc(yaml: &str) -> DynamicObject {
    serde_yaml::from_str(yaml).expect("test YAML parses")
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

/// (description, YAML, text the 422 message must contain: the field, and a fragment of the reason)
fn invalid_tenants() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let t = |name: &str, spec: &str| {
        format!("apiVersion: tenancy.platform.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n{spec}")
    };
    let base = "  displayName: Acme Corp\n  cluster: uk\n  environments: [dev]\n";
    vec![
        ("missing displayName", t("acme", "  cluster: uk\n  environments: [dev]\n"), "spec.displayName", "Required value"),
        (
            "displayName too long",
            t("acme", &format!("  displayName: {}\n  cluster: uk\n  environments: [dev]\n", long(129))),
            "spec.displayName",
            "Too long",
        ),
        (
            "empty displayName",
            t("acme", "  displayName: ''\n  cluster: uk\n  environments: [dev]\n"),
            "spec.displayName",
            "at least 1 chars long",
        ),
        ("missing cluster", t("acme", "  displayName: Acme\n  environments: [dev]\n"), "spec.cluster", "Required value"),
        (
            "cluster not a DNS label",
            t("acme", "  displayName: Acme\n  cluster: UK_South\n  environments: [dev]\n"),
            "spec.cluster",
            "should match",
        ),
        (
            "empty environments",
            t("acme", "  displayName: Acme\n  cluster: uk\n  environments: []\n"),
            "spec.environments",
            "at least 1 items",
        ),
        (
            "unknown environment qa",
            t("acme", "  displayName: Acme\n  cluster: uk\n  environments: [dev, qa]\n"),
            "spec.environments[1]",
            "Unsupported value: \"qa\": supported values: \"dev\", \"staging\", \"prod\"",
        ),
        // Set uniqueness is the API server's own check for `x-kubernetes-list-type: set`
        // (apiextensions-apiserver's listtype validation, "Duplicate value"), so the CRD carries
        // no CEL rule repeating it.
        (
            "duplicate environment",
            t("acme", "  displayName: Acme\n  cluster: uk\n  environments: [dev, dev]\n"),
            "spec.environments[1]",
            "Duplicate value: \"dev\"",
        ),
        ("name with upper case", t("Acme", base), "metadata.name", "RFC 1123"),
        ("name of 41 characters", t(&long(41), base), "metadata.name", "at most 40 characters"),
        ("name with a dot", t("acme.corp", base), "metadata.name", "DNS-1123 label"),
        (
            "unknown database provider",
            t("acme", &format!("{base}  database:\n    provider: mysql\n")),
            "spec.database.provider",
            "Unsupported value: \"mysql\"",
        ),
        (
            "bad deletionPolicy",
            t("acme", &format!("{base}  deletionPolicy: Destroy\n")),
            "spec.deletionPolicy",
            "Unsupported value: \"Destroy\"",
        ),
        (
            "too many applications",
            t("acme", &format!("{base}  applications: [{}]\n", (0..33).map(|i| format!("app{i}")).collect::<Vec<_>>().join(", "))),
            "spec.applications",
            "must have at most 32 items",
        ),
        ("application not a DNS label", t("acme", &format!("{base}  applications: [X_console]\n")), "spec.applications[0]", "should match"),
        (
            "duplicate application",
            t("acme", &format!("{base}  applications: [xconsole, xconsole]\n")),
            "spec.applications[1]",
            "Duplicate value",
        ),
        (
            "cpu quota that is no quantity",
            t("acme", &format!("{base}  quota:\n    cpu: lots\n")),
            "spec.quota.cpu",
            "must be a Kubernetes quantity",
        ),
        (
            "storage that is no quantity",
            t("acme", &format!("{base}  database:\n    storage: 1 GB\n")),
            "spec.database.storage",
            "must be a Kubernetes quantity",
        ),
        ("negative pod quota", t("acme", &format!("{base}  quota:\n    pods: -1\n")), "spec.quota.pods", "greater than or equal to 0"),
        ("suspend not a boolean", t("acme", &format!("{base}  suspend: sometimes\n")), "spec.suspend", "must be of type boolean"),
        (
            "adoptRetainedFrom not a UID",
            t("acme", &format!("{base}  adoptRetainedFrom: acme\n")),
            "spec.adoptRetainedFrom",
            "at least 36 chars long",
        ),
        (
            "adoptRetainedFrom with upper-case letters",
            t("acme", &format!("{base}  adoptRetainedFrom: 0F4C2A9E-1B2C-4D5E-8F90-A1B2C3D4E5F6\n")),
            "spec.adoptRetainedFrom",
            "should match",
        ),
        (
            "missing spec",
            "apiVersion: tenancy.platform.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: acme\n".to_string(),
            "spec",
            "Required value",
        ),
    ]
}

fn invalid_users() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let u = |spec: &str| {
        format!("apiVersion: tenancy.platform.dev/v1alpha1\nkind: TenantUser\nmetadata:\n  name: jdoe\nspec:\n  firstName: Jane\n  lastName: Doe\n{spec}")
    };
    let who = "  email: jane.doe@acme.example\n  username: jdoe\n";
    vec![
        ("user without roles and customRoles", u(who), "spec", "a user needs at least one role or custom role"),
        ("user with empty roles", u(&format!("{who}  roles: []\n")), "spec", "a user needs at least one role or custom role"),
        ("unknown role", u(&format!("{who}  roles: [Owner]\n")), "spec.roles[0]", "Unsupported value: \"Owner\""),
        ("duplicate role", u(&format!("{who}  roles: [Designer, Designer]\n")), "spec.roles[1]", "Duplicate value"),
        ("bad email", u("  email: jane.doe\n  username: jdoe\n  roles: [Designer]\n"), "spec.email", "should match"),
        (
            "username with spaces",
            u("  email: jane@acme.example\n  username: jane doe\n  roles: [Designer]\n"),
            "spec.username",
            "should match",
        ),
        ("missing username", u("  email: jane@acme.example\n  roles: [Designer]\n"), "spec.username", "Required value"),
        (
            "username as an upper-case email",
            u("  email: jane@acme.example\n  username: Jane@Acme.example\n  roles: [Designer]\n"),
            "spec.username",
            "should match",
        ),
        (
            "username longer than 253",
            u(&format!("  email: jane@acme.example\n  username: {}@acme.example\n  roles: [Designer]\n", long(241))),
            "spec.username",
            "Too long",
        ),
        (
            "email notifications without AccountAdmin",
            u(&format!("{who}  roles: [Designer, FlowAdmin]\n  receiveEmailNotifications: true\n")),
            "spec.receiveEmailNotifications",
            "receiveEmailNotifications: true is for Account Admins",
        ),
        (
            "phone with letters",
            u(&format!("{who}  roles: [Agent]\n  details:\n    phone: call me\n")),
            "spec.details.phone",
            "should match",
        ),
        ("custom role with upper case", u(&format!("{who}  customRoles: [Flow-Editor]\n")), "spec.customRoles[0]", "should match"),
    ]
}

fn assert_rejected(what: &str, err: kube::Error, field: &str, fragment: &str) {
    let kube::Error::Api(s) = err else { panic!("{what}: expected an API error, got {err:?}") };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{what}: {}", s.message);
    assert!(s.message.contains(field), "{what}: message should name {field}: {}", s.message);
    assert!(s.message.contains(fragment), "{what}: message should say {fragment:?}: {}", s.message);
}

#[tokio::test]
async fn invalid_tenants_are_rejected_naming_the_field() {
    let fake = FakeApiServer::start().await;
    let tenants = api(&fake, "Tenant");
    let cases = invalid_tenants();
    assert!(cases.len() >= 15);
    for (what, yaml, field, fragment) in cases {
        let err = tenants.create(&PostParams::default(), &doc(&yaml)).await.expect_err(what);
        assert_rejected(what, err, field, fragment);
    }
    assert!(fake.objects("tenancy.platform.dev/v1alpha1", "Tenant").is_empty());
}

#[tokio::test]
async fn invalid_tenant_users_are_rejected_naming_the_field() {
    let fake = FakeApiServer::start().await;
    let users = users_api(&fake).await;
    for (what, yaml, field, fragment) in invalid_users() {
        let err = users.create(&PostParams::default(), &doc(&yaml)).await.expect_err(what);
        assert_rejected(what, err, field, fragment);
    }
}

#[tokio::test]
async fn invalid_documents_are_rejected_by_server_side_apply_too() {
    let fake = FakeApiServer::start().await;
    let tenants = api(&fake, "Tenant");
    let pp = PatchParams::apply("gitops").force();
    for (what, yaml, field, fragment) in invalid_tenants().into_iter().filter(|(w, ..)| !w.starts_with("name")) {
        let d = doc(&yaml);
        let err = tenants.patch(&d.metadata.name.clone().unwrap(), &pp, &Patch::Apply(&d)).await.expect_err(what);
        assert_rejected(what, err, field, fragment);
    }
}

#[tokio::test]
async fn valid_documents_are_accepted_with_defaults() {
    let fake = FakeApiServer::start().await;
    let tenants = api(&fake, "Tenant");
    let minimal = tenants
        .create(
            &PostParams::default(),
            &doc("apiVersion: tenancy.platform.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: acme\nspec:\n  displayName: Acme Corp\n  cluster: uk\n  environments: [dev]\n"),
        )
        .await
        .unwrap();
    assert_eq!(minimal.data["spec"]["deletionPolicy"], "Retain");
    assert_eq!(minimal.data["spec"]["suspend"], false);
    let full = format!(
        "apiVersion: tenancy.platform.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {}\nspec:\n  displayName: Globex\n  cluster: us-east\n  environments: [dev, staging, prod]\n  applications: [xconsole, u-assist]\n  database:\n    provider: cloudnative-pg\n    storage: 5Gi\n    storageClassName: fast\n  quota:\n    cpu: \"8\"\n    memory: 16Gi\n    pods: 50\n  deletionPolicy: Delete\n  suspend: true\n",
        long(40)
    );
    let full = tenants.create(&PostParams::default(), &doc(&full)).await.unwrap();
    assert_eq!(full.data["spec"]["deletionPolicy"], "Delete");
    assert_eq!(full.data["spec"]["quota"]["cpu"], "8");
    // the typed client reads both back
    let typed: Api<Tenant> = Api::all(fake.client());
    assert_eq!(typed.list(&Default::default()).await.unwrap().items.len(), 2);

    let users = users_api(&fake).await;
    for yaml in [
        "apiVersion: tenancy.platform.dev/v1alpha1\nkind: TenantUser\nmetadata:\n  name: jdoe\nspec:\n  email: jane.doe@acme.example\n  username: jdoe\n  firstName: Jane\n  lastName: Doe\n  roles: [Designer, AccountAdmin]\n  customRoles: [flow-billing-editor]\n  details: {alias: JD, title: Lead, department: CX, division: EMEA, phone: \"+44 20 0000\", extension: \"12\"}\n  receiveEmailNotifications: true\n",
        "apiVersion: tenancy.platform.dev/v1alpha1\nkind: TenantUser\nmetadata:\n  name: bot\nspec:\n  email: bot@acme.example\n  username: bot.1\n  firstName: Build\n  lastName: Bot\n  customRoles: [tenancy:viewer]\n",
        "apiVersion: tenancy.platform.dev/v1alpha1\nkind: TenantUser\nmetadata:\n  name: ann\nspec:\n  email: ann.lee@acme.example\n  username: ann.lee@acme.example\n  firstName: Ann\n  lastName: Lee\n  roles: [Agent]\n  receiveEmailNotifications: false\n",
    ] {
        users.create(&PostParams::default(), &doc(yaml)).await.unwrap();
    }
    let typed: Api<TenantUser> = Api::namespaced(fake.client(), "acme-account");
    assert_eq!(typed.list(&Default::default()).await.unwrap().items.len(), 3);
}

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, generated) in [
        ("crds/tenants.yaml", serde_saphyr::to_string(&Tenant::crd()).unwrap()),
        ("crds/tenantusers.yaml", serde_saphyr::to_string(&TenantUser::crd()).unwrap()),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is out of date with the Rust types in src/types; regenerate it with `cargo run -- crd --dir crds` (then `TENANT_OPERATOR_UPDATE_MANIFESTS=1 cargo test --test packaging` for the copies) and commit the result"
        );
    }
}

fn committed_crd(file: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Paths (`spec.database.provider`, `status.conditions[].reason` …) of every property under
/// `schema` without a non-empty description, as `kubectl explain` would print them.
fn undocumented(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, property) in properties {
            let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            let described = property.get("description").and_then(|d| d.as_str()).is_some_and(|d| !d.trim().is_empty());
            if !described {
                out.push(child.clone());
            }
            undocumented(property, &child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(values, &format!("{path}.*"), out);
    }
}

#[test]
fn every_field_of_both_kinds_has_a_description() {
    for file in ["tenants.yaml", "tenantusers.yaml"] {
        let crd = committed_crd(file);
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        assert!(!versions.is_empty());
        for version in versions {
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut missing = Vec::new();
            undocumented(schema, "", &mut missing);
            assert!(missing.is_empty(), "{file}: fields without a description (add a doc comment in src/types): {missing:?}");
            // The walk must actually see the fields, or an empty schema would pass.
            assert!(schema.pointer("/properties/spec/properties").and_then(|p| p.as_object()).is_some_and(|p| p.len() >= 5), "{file}");
            assert!(schema.pointer("/properties/status/properties/conditions/items/properties/reason").is_some(), "{file}");
        }
    }
    // The two fields the issue names, by `kubectl explain` path.
    let tenant = committed_crd("tenants.yaml");
    let schema = &tenant["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for (pointer, needle) in [
        ("/properties/spec/properties/database/properties/provider/description", "cloudnative-pg"),
        ("/properties/status/properties/phase/description", "Provisioning"),
        ("/properties/status/properties/conditions/description", "Stalled"),
    ] {
        let text = schema.pointer(pointer).and_then(|d| d.as_str()).unwrap_or_default();
        assert!(text.contains(needle), "{pointer}: {text:?} should mention {needle}");
    }
}

#[test]
fn phases_are_the_documented_five() {
    let tenant = committed_crd("tenants.yaml");
    let phases = tenant.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/phase/enum").cloned();
    assert_eq!(phases, Some(json!(["Provisioning", "Ready", "Failed", "Suspended", "Terminating"])));
}

#[test]
fn wide_output_shows_the_ready_reason_and_message() {
    for file in ["tenants.yaml", "tenantusers.yaml"] {
        let crd = committed_crd(file);
        let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"].as_array().cloned().unwrap_or_default();
        for (name, path) in
            [("Reason", ".status.conditions[?(@.type==\"Ready\")].reason"), ("Message", ".status.conditions[?(@.type==\"Ready\")].message")]
        {
            let column = columns.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{file}: no {name} column"));
            assert_eq!(column["jsonPath"], path, "{file}: {name}");
            assert_eq!(column["priority"], 1, "{file}: {name} belongs to -o wide only");
        }
        // The default columns stay priority 0 (absent).
        let ready = columns.iter().find(|c| c["name"] == "Ready").unwrap_or_else(|| panic!("{file}: no Ready column"));
        assert!(ready.get("priority").is_none(), "{file}: Ready is a default column");
    }
}

#[test]
fn crds_are_never_pruned_by_helm_argo_cd_or_flux() {
    for file in ["tenants.yaml", "tenantusers.yaml"] {
        let crd = committed_crd(file);
        let annotations = &crd["metadata"]["annotations"];
        assert_eq!(annotations["helm.sh/resource-policy"], "keep", "{file}");
        assert_eq!(annotations["kustomize.toolkit.fluxcd.io/prune"], "disabled", "{file}");
        let argo = annotations["argocd.argoproj.io/sync-options"].as_str().unwrap_or_default();
        let options: Vec<&str> = argo.split(',').map(str::trim).collect();
        assert!(options.contains(&"Prune=false") && options.contains(&"Delete=false"), "{file}: {argo:?}");
    }
}

#[test]
fn no_cel_rule_repeats_the_set_uniqueness_the_api_server_enforces() {
    fn walk(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        if schema.get("x-kubernetes-list-type").and_then(|t| t.as_str()) == Some("set") {
            for rule in schema.get("x-kubernetes-validations").and_then(|v| v.as_array()).into_iter().flatten() {
                let text = rule["rule"].as_str().unwrap_or_default();
                if text.contains("exists_one") {
                    out.push(format!("{path}: {text}"));
                }
            }
        }
        for (name, child) in schema.get("properties").and_then(|p| p.as_object()).into_iter().flatten() {
            walk(child, &format!("{path}.{name}"), out);
        }
    }
    for file in ["tenants.yaml", "tenantusers.yaml"] {
        let crd = committed_crd(file);
        let mut redundant = Vec::new();
        walk(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "", &mut redundant);
        assert!(redundant.is_empty(), "{file}: {redundant:?}");
    }
}

//! What GitOps tools make of a Tenant's and a TenantUser's status (docs/gitops.md).
//!
//! - The Argo CD health checks `deploy/argocd/health-*.lua` run in a real Lua 5.4 (`mlua`)
//!   against the status documents in `tests/data/status/`, the way Argo CD runs them: the
//!   object as the global `obj`, the returned table's `status` and `message` read back.
//! - The kstatus rules Flux's `wait`/`healthChecks` apply to custom resources are computed in
//!   Rust from the same documents.
//! - The documents themselves follow the status contract (conditions Ready/Reconciling/Stalled,
//!   the five phases, a failure never with Ready=True) and deserialize into the API types.
//!
//! `docs/gitops.md` shows the Lua scripts; a test keeps the copies there identical to the files.

use std::path::{Path, PathBuf};

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt, Table};
use serde_json::Value;
use tenant_operator::types::{Tenant, TenantUser};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn status_doc(file: &str) -> Value {
    serde_json::from_str(&read(Path::new("tests/data/status").join(file))).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn script_for(obj: &Value) -> &'static str {
    match obj["kind"].as_str() {
        Some("Tenant") => "deploy/argocd/health-tenant.lua",
        Some("TenantUser") => "deploy/argocd/health-tenantuser.lua",
        other => panic!("no health check for kind {other:?}"),
    }
}

/// Argo CD's verdict: (status, message).
fn argo_health(obj: &Value) -> (String, String) {
    let path = script_for(obj);
    let lua = Lua::new();
    // JSON null must arrive as Lua nil, as Argo CD hands objects to its scripts.
    let options = SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    let value = lua.to_value_with(obj, options).unwrap_or_else(|e| panic!("{path}: object to Lua: {e}"));
    lua.globals().set("obj", value).unwrap_or_else(|e| panic!("{path}: {e}"));
    let result: Table = lua.load(read(path)).set_name(path).eval().unwrap_or_else(|e| panic!("{path} failed: {e}"));
    let status: String = result.get("status").unwrap_or_else(|e| panic!("{path}: no status: {e}"));
    let message: String = result.get("message").unwrap_or_default();
    (status, message)
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

fn is_true(obj: &Value, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == "True")
}

/// kstatus' generic rules for a resource it has no special knowledge of: deletion first, then
/// an outdated `observedGeneration`, then `Reconciling`, then `Stalled`; otherwise current.
/// (kstatus does not read `Ready`: a Tenant that is not ready must say `Reconciling` or
/// `Stalled`, or Flux moves on.)
fn kstatus(obj: &Value) -> KStatus {
    if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return KStatus::Terminating;
    }
    if let Some(observed) = obj.pointer("/status/observedGeneration").and_then(Value::as_i64) {
        if Some(observed) != obj.pointer("/metadata/generation").and_then(Value::as_i64) {
            return KStatus::InProgress;
        }
    }
    if is_true(obj, "Reconciling") {
        return KStatus::InProgress;
    }
    if is_true(obj, "Stalled") {
        return KStatus::Failed;
    }
    KStatus::Current
}

/// (document, Argo CD health, kstatus)
const CASES: [(&str, &str, KStatus); 9] = [
    ("tenant-ready.json", "Healthy", KStatus::Current),
    ("tenant-provisioning.json", "Progressing", KStatus::InProgress),
    ("tenant-failed-stalled.json", "Degraded", KStatus::Failed),
    ("tenant-suspended.json", "Suspended", KStatus::Current),
    ("tenant-terminating.json", "Progressing", KStatus::Terminating),
    ("tenant-outdated.json", "Progressing", KStatus::InProgress),
    ("tenantuser-ready.json", "Healthy", KStatus::Current),
    ("tenantuser-waiting-for-tenant.json", "Progressing", KStatus::InProgress),
    ("tenantuser-duplicate-email.json", "Degraded", KStatus::Failed),
];

#[test]
fn every_status_document_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests/data/status"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    files.sort();
    let mut covered: Vec<String> = CASES.iter().map(|(f, ..)| (*f).to_owned()).collect();
    covered.sort();
    assert_eq!(files, covered);
}

#[test]
fn argo_cd_health_of_each_status() {
    for (file, want, _) in CASES {
        let obj = status_doc(file);
        let (status, message) = argo_health(&obj);
        assert_eq!(status, want, "{file}: {message}");
        assert!(!message.is_empty(), "{file}: a health status needs a message");
    }
}

#[test]
fn argo_cd_messages_carry_the_reason_a_person_acts_on() {
    let (_, message) = argo_health(&status_doc("tenant-failed-stalled.json"));
    assert!(message.starts_with("UnknownCluster: ") && message.contains("mars"), "{message}");
    let (_, message) = argo_health(&status_doc("tenantuser-duplicate-email.json"));
    assert!(message.starts_with("DuplicateEmail: "), "{message}");
    let (_, message) = argo_health(&status_doc("tenant-provisioning.json"));
    assert!(message.starts_with("DatabaseNotReady: "), "{message}");
    let (_, message) = argo_health(&status_doc("tenant-outdated.json"));
    assert!(message.contains("generation 3"), "{message}");
}

#[test]
fn argo_cd_health_without_a_status_or_with_a_stale_ready() {
    // Just applied: no status yet.
    let mut fresh = status_doc("tenant-ready.json");
    fresh.as_object_mut().map(|o| o.remove("status"));
    assert_eq!(argo_health(&fresh).0, "Progressing");
    let mut fresh_user = status_doc("tenantuser-ready.json");
    fresh_user.as_object_mut().map(|o| o.remove("status"));
    assert_eq!(argo_health(&fresh_user).0, "Progressing");

    // Ready=True but Reconciling=True (a change is being rolled out): not yet healthy.
    let mut rolling = status_doc("tenant-ready.json");
    for c in rolling.pointer_mut("/status/conditions").and_then(Value::as_array_mut).into_iter().flatten() {
        if c["type"] == "Reconciling" {
            c["status"] = "True".into();
            c["reason"] = "Provisioning".into();
        }
    }
    assert_eq!(argo_health(&rolling).0, "Progressing");
    assert_eq!(kstatus(&rolling), KStatus::InProgress);

    // A Failed phase is Degraded even without Stalled (a failed reconcile the operator retries).
    let mut failed = status_doc("tenant-provisioning.json");
    failed["status"]["phase"] = "Failed".into();
    for c in failed.pointer_mut("/status/conditions").and_then(Value::as_array_mut).into_iter().flatten() {
        if c["type"] == "Reconciling" {
            c["status"] = "False".into();
        }
    }
    assert_eq!(argo_health(&failed).0, "Degraded");

    // JSON nulls (which some serializers write for absent fields) are absent, not errors.
    let mut nulls = status_doc("tenant-ready.json");
    nulls["metadata"]["deletionTimestamp"] = Value::Null;
    assert_eq!(argo_health(&nulls).0, "Healthy");
}

#[test]
fn kstatus_of_each_status_as_flux_waits_on_it() {
    for (file, _, want) in CASES {
        assert_eq!(kstatus(&status_doc(file)), want, "{file}");
    }
}

/// The status contract the operator writes (docs/reference.md, "Status").
#[test]
fn status_documents_follow_the_contract() {
    let phases = ["Provisioning", "Ready", "Failed", "Suspended", "Terminating"];
    for (file, ..) in CASES {
        let obj = status_doc(file);
        let kind = obj["kind"].as_str().unwrap_or_default();
        let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or_default();
        let observed = obj.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or_default();
        assert!(observed >= 1 && observed <= generation, "{file}: observedGeneration {observed}, generation {generation}");
        for type_ in ["Ready", "Reconciling", "Stalled"] {
            let c = condition(&obj, type_).unwrap_or_else(|| panic!("{file}: no {type_} condition"));
            assert!(c["status"] == "True" || c["status"] == "False", "{file}: {type_} status {}", c["status"]);
            let reason = c["reason"].as_str().unwrap_or_default();
            assert!(
                reason.chars().next().is_some_and(|ch| ch.is_ascii_uppercase()) && reason.chars().all(|ch| ch.is_ascii_alphanumeric()),
                "{file}: {type_} reason {reason:?} must be CamelCase"
            );
            assert!(c["message"].as_str().is_some_and(|m| !m.is_empty()), "{file}: {type_} needs a message");
        }
        assert!(!(is_true(&obj, "Reconciling") && is_true(&obj, "Stalled")), "{file}: Reconciling and Stalled at once");
        if is_true(&obj, "Ready") {
            assert!(!is_true(&obj, "Stalled"), "{file}: Ready and Stalled at once");
        }
        if kind == "Tenant" {
            let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
            assert!(phases.contains(&phase), "{file}: phase {phase:?}");
            // A failed reconcile never leaves Ready=True; a Ready phase needs Ready=True.
            assert_eq!(phase == "Ready", is_true(&obj, "Ready"), "{file}: phase {phase} vs Ready condition");
            if phase == "Failed" || is_true(&obj, "Stalled") {
                assert!(!is_true(&obj, "Ready"), "{file}");
            }
            if phase == "Provisioning" || phase == "Terminating" {
                assert!(is_true(&obj, "Reconciling"), "{file}: {phase} is work in progress");
            }
            for part in ["NamespacesReady", "IngressReady", "DatabaseReady"] {
                assert!(condition(&obj, part).is_some(), "{file}: no {part}");
            }
            let typed: Tenant = serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(typed.status.is_some());
        } else {
            let typed: TenantUser = serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(typed.status.is_some());
        }
    }
}

#[test]
fn the_gitops_guide_shows_the_scripts_verbatim() {
    let guide = read("docs/gitops.md");
    for script in ["deploy/argocd/health-tenant.lua", "deploy/argocd/health-tenantuser.lua"] {
        let text = read(script);
        // In argocd-cm the script is a YAML block scalar, indented under its key.
        let indented: String = text.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("    {l}\n") }).collect();
        assert!(guide.contains(&indented), "docs/gitops.md must contain {script} verbatim (indented by 4 spaces)");
    }
    for key in
        ["resource.customizations.health.tenancy.platform.dev_Tenant", "resource.customizations.health.tenancy.platform.dev_TenantUser"]
    {
        assert!(guide.contains(key), "docs/gitops.md must name {key}");
    }
}

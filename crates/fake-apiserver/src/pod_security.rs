//! Pod Security admission (the `PodSecurity` plugin) for pods created in a namespace labelled
//! `pod-security.kubernetes.io/enforce=baseline|restricted`: the checks of the Pod Security
//! Standards (`k8s.io/pod-security-admission/policy`, level `latest`), with the real reasons
//! and details, e.g. `violates PodSecurity "restricted:latest": allowPrivilegeEscalation !=
//! false (container "app" must set securityContext.allowPrivilegeEscalation=false)`.
//!
//! Simpler than the real plugin: only `enforce` (no `warn`/`audit` responses), no version
//! pinning (`enforce-version` is ignored: always `latest`), no exemptions, pods only on
//! create (not pod updates, not workload templates), and the AppArmor, SELinux, `/proc` mount,
//! sysctl and Windows checks are left out.

use serde_json::Value;

use super::errors::ApiError;

const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Capabilities `baseline` lets containers add (the container runtimes' defaults).
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types `restricted` allows.
const RESTRICTED_VOLUMES: [&str; 8] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Baseline,
    Restricted,
}

/// One check that failed: the reason and the details, as the real plugin words them.
struct Violation {
    reason: &'static str,
    details: Vec<String>,
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["/spec/initContainers", "/spec/containers", "/spec/ephemeralContainers"]
        .iter()
        .flat_map(|list| pod.pointer(list).and_then(Value::as_array).into_iter().flatten())
        .collect()
}

fn name(container: &Value) -> String {
    container.get("name").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!("{} {}", if names.len() == 1 { "container" } else { "containers" }, quoted(names))
}

fn flag(v: &Value, pointer: &str) -> Option<bool> {
    v.pointer(pointer).and_then(Value::as_bool)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// Containers for which `check` holds, by name.
fn which(pod: &Value, check: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(pod).into_iter().filter(|c| check(c)).map(name).collect()
}

fn violation(reason: &'static str, details: Vec<String>) -> Option<Violation> {
    (!details.is_empty()).then_some(Violation { reason, details })
}

fn allow_privilege_escalation(pod: &Value) -> Option<Violation> {
    let bad = which(pod, |c| flag(c, "/securityContext/allowPrivilegeEscalation") != Some(false));
    let detail = (!bad.is_empty()).then(|| format!("{} must set securityContext.allowPrivilegeEscalation=false", containers_phrase(&bad)));
    violation("allowPrivilegeEscalation != false", detail.into_iter().collect())
}

fn capabilities(pod: &Value, level: Level) -> Option<Violation> {
    let mut details = Vec::new();
    if level == Level::Restricted {
        let no_drop = which(pod, |c| !strings(c.pointer("/securityContext/capabilities/drop")).iter().any(|d| d == "ALL"));
        if !no_drop.is_empty() {
            details.push(format!("{} must set securityContext.capabilities.drop=[\"ALL\"]", containers_phrase(&no_drop)));
        }
    }
    let allowed = |cap: &str| match level {
        Level::Baseline => BASELINE_CAPABILITIES.contains(&cap),
        Level::Restricted => cap == "NET_BIND_SERVICE",
    };
    for c in containers(pod) {
        let added: Vec<String> = strings(c.pointer("/securityContext/capabilities/add")).into_iter().filter(|cap| !allowed(cap)).collect();
        if !added.is_empty() {
            details.push(format!("container {:?} must not include {} in securityContext.capabilities.add", name(c), quoted(&added)));
        }
    }
    let reason = if level == Level::Restricted { "unrestricted capabilities" } else { "non-default capabilities" };
    violation(reason, details)
}

fn host_namespaces(pod: &Value) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| flag(pod, &format!("/spec/{f}")) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    violation("host namespaces", (!set.is_empty()).then(|| set.join(", ")).into_iter().collect())
}

fn volumes(pod: &Value, level: Level) -> Option<Violation> {
    let volumes: Vec<&Value> = pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten().collect();
    if level == Level::Restricted {
        let details: Vec<String> = volumes
            .iter()
            .filter_map(|v| {
                let kind = v.as_object()?.keys().find(|k| *k != "name")?.clone();
                (!RESTRICTED_VOLUMES.contains(&kind.as_str())).then(|| format!("volume {:?} uses restricted volume type {kind:?}", name(v)))
            })
            .collect();
        return violation("restricted volume types", details);
    }
    let host_path: Vec<String> = volumes.iter().filter(|v| v.get("hostPath").is_some()).map(|v| name(v)).collect();
    let detail =
        (!host_path.is_empty()).then(|| format!("{} {}", if host_path.len() == 1 { "volume" } else { "volumes" }, quoted(&host_path)));
    violation("hostPath volumes", detail.into_iter().collect())
}

fn host_ports(pod: &Value) -> Option<Violation> {
    let mut details = Vec::new();
    for c in containers(pod) {
        let ports: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64).filter(|port| *port != 0).map(|port| port.to_string()))
            .collect();
        if !ports.is_empty() {
            details.push(format!(
                "container {:?} uses {} {}",
                name(c),
                if ports.len() == 1 { "hostPort" } else { "hostPorts" },
                ports.join(", ")
            ));
        }
    }
    violation("hostPort", details)
}

fn privileged(pod: &Value) -> Option<Violation> {
    let bad = which(pod, |c| flag(c, "/securityContext/privileged") == Some(true));
    let detail = (!bad.is_empty()).then(|| format!("{} must not set securityContext.privileged=true", containers_phrase(&bad)));
    violation("privileged", detail.into_iter().collect())
}

fn run_as_non_root(pod: &Value) -> Option<Violation> {
    let pod_level = flag(pod, "/spec/securityContext/runAsNonRoot");
    let mut details = Vec::new();
    if pod_level == Some(false) {
        details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit_false = which(pod, |c| flag(c, "/securityContext/runAsNonRoot") == Some(false));
    if !explicit_false.is_empty() {
        details.push(format!("{} must not set securityContext.runAsNonRoot=false", containers_phrase(&explicit_false)));
    }
    if pod_level != Some(true) {
        let unset = which(pod, |c| flag(c, "/securityContext/runAsNonRoot").is_none());
        if !unset.is_empty() && pod_level.is_none() {
            let who = if unset.len() == 1 { "container" } else { "containers" };
            details.push(format!("pod or {who} {} must set securityContext.runAsNonRoot=true", quoted(&unset)));
        }
    }
    violation("runAsNonRoot != true", details)
}

fn run_as_user(pod: &Value) -> Option<Violation> {
    let mut details = Vec::new();
    if pod.pointer("/spec/securityContext/runAsUser").and_then(Value::as_i64) == Some(0) {
        details.push("pod must not set runAsUser=0".to_string());
    }
    let bad = which(pod, |c| c.pointer("/securityContext/runAsUser").and_then(Value::as_i64) == Some(0));
    if !bad.is_empty() {
        details.push(format!("{} must not set runAsUser=0", containers_phrase(&bad)));
    }
    violation("runAsUser=0", details)
}

fn seccomp(pod: &Value, level: Level) -> Option<Violation> {
    let kind = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(String::from);
    let pod_type = kind(pod, "/spec/securityContext/seccompProfile/type");
    let mut details = Vec::new();
    if pod_type.as_deref() == Some("Unconfined") {
        details.push("pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string());
    }
    let unconfined = which(pod, |c| kind(c, "/securityContext/seccompProfile/type").as_deref() == Some("Unconfined"));
    if !unconfined.is_empty() {
        details.push(format!("{} must not set securityContext.seccompProfile.type to \"Unconfined\"", containers_phrase(&unconfined)));
    }
    if level == Level::Restricted && pod_type.is_none() {
        let unset = which(pod, |c| kind(c, "/securityContext/seccompProfile/type").is_none());
        if !unset.is_empty() {
            let who = if unset.len() == 1 { "container" } else { "containers" };
            details.push(format!(
                "pod or {who} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                quoted(&unset)
            ));
        }
    }
    violation("seccompProfile", details)
}

/// Refuses a pod that breaks the enforced level of its namespace (`namespace_labels`).
pub fn admit(namespace_labels: Option<&Value>, pod_name: &str, pod: &Value) -> Result<(), ApiError> {
    let level = match namespace_labels.and_then(|l| l.get(ENFORCE_LABEL)).and_then(Value::as_str) {
        Some("restricted") => Level::Restricted,
        Some("baseline") => Level::Baseline,
        _ => return Ok(()),
    };
    let restricted = level == Level::Restricted;
    // In the real plugin's order: the baseline checks (by check ID), then, at `restricted`, the
    // restricted ones, which replace their baseline counterparts (capabilities, volumes,
    // seccomp). Checked against a real API server.
    let checks: Vec<Option<Violation>> = if restricted {
        vec![
            host_namespaces(pod),
            host_ports(pod),
            privileged(pod),
            allow_privilege_escalation(pod),
            capabilities(pod, level),
            volumes(pod, level),
            run_as_non_root(pod),
            run_as_user(pod),
            seccomp(pod, level),
        ]
    } else {
        vec![capabilities(pod, level), host_namespaces(pod), volumes(pod, level), host_ports(pod), privileged(pod), seccomp(pod, level)]
    };
    let violations: Vec<Violation> = checks.into_iter().flatten().collect();
    if violations.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = violations.iter().map(|v| format!("{} ({})", v.reason, v.details.join("; "))).collect();
    let level_name = if restricted { "restricted" } else { "baseline" };
    Err(ApiError::forbidden("", "pods", pod_name, &format!("violates PodSecurity \"{level_name}:latest\": {}", text.join(", "))))
}

//! Defaults and the validation rules of built-in kinds that an operator is likely to trip
//! over (immutable fields, required references). Far from the real server's full validation.

use serde_json::{json, Value};

use super::errors::Cause;
use super::resources::ResourceType;
use super::store::State;

fn set_default(obj: &mut Value, ptr: &str, v: Value) {
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    let mut cur = obj;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        if i + 1 == parts.len() {
            if cur.get(*p).is_none_or(Value::is_null) {
                cur[*p] = v;
            }
            return;
        }
        if cur.get(*p).is_none() {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).unwrap();
    }
}

fn each_item(obj: &mut Value, ptr: &str, f: impl Fn(&mut Value)) {
    if let Some(items) = obj.pointer_mut(ptr).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(f);
    }
}

/// Defaults set only when an object is created (allocations, initial status).
pub fn default_on_create(state: &mut State, rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            set_default(obj, "/spec/finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Service") => {
            let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
            if ty != "ExternalName" && obj.pointer("/spec/clusterIP").and_then(Value::as_str).is_none() {
                let ip = state.next_ip();
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        ("", "PersistentVolumeClaim") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        // No kubelet: a pod stays Pending until a test reports it running.
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
}

fn pod_spec_defaults(spec: &mut Value) {
    set_default(spec, "/restartPolicy", json!("Always"));
    set_default(spec, "/terminationGracePeriodSeconds", json!(30));
    set_default(spec, "/dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "/schedulerName", json!("default-scheduler"));
    set_default(spec, "/securityContext", json!({}));
    for list in ["/containers", "/initContainers"] {
        each_item(spec, list, |c| {
            set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "/terminationMessagePolicy", json!("File"));
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let tag_latest = !image.contains(':') || image.ends_with(":latest");
            set_default(c, "/imagePullPolicy", json!(if tag_latest && !image.contains('@') { "Always" } else { "IfNotPresent" }));
            set_default(c, "/resources", json!({}));
            each_item(c, "/ports", |p| set_default(p, "/protocol", json!("TCP")));
        });
    }
}

/// Defaults applied on every write (the real server defaults on decode).
pub fn default(rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            if !obj["metadata"].get("labels").is_some_and(Value::is_object) {
                obj["metadata"]["labels"] = json!({});
            }
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "Secret") => {
            set_default(obj, "/type", json!("Opaque"));
            // Like the real server (pkg/apis/core/v1 conversion): stringData is write-only,
            // merged into data base64-encoded, and never stored.
            if let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                if !obj.get("data").is_some_and(Value::is_object) {
                    obj["data"] = json!({});
                }
                for (key, value) in string_data {
                    let text = value.as_str().unwrap_or_default();
                    let encoded = serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap_or_default();
                    obj["data"][key] = encoded;
                }
            }
        }
        ("", "Service") => {
            set_default(obj, "/spec/type", json!("ClusterIP"));
            set_default(obj, "/spec/sessionAffinity", json!("None"));
            each_item(obj, "/spec/ports", |p| {
                set_default(p, "/protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    set_default(p, "/targetPort", port);
                }
            });
            if obj.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName") {
                set_default(obj, "/spec/ipFamilies", json!(["IPv4"]));
                set_default(obj, "/spec/ipFamilyPolicy", json!("SingleStack"));
                set_default(obj, "/spec/internalTrafficPolicy", json!("Cluster"));
            }
            // allocated values survive updates that omit them
            if let Some(old) = old {
                for f in ["clusterIP", "clusterIPs"] {
                    if obj.pointer(&format!("/spec/{f}")).is_none() {
                        if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                            obj["spec"][f] = v.clone();
                        }
                    }
                }
            }
        }
        ("", "PersistentVolumeClaim") => set_default(obj, "/spec/volumeMode", json!("Filesystem")),
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec_defaults(spec);
            }
        }
        ("", "LimitRange") => super::pods::default_limit_range(obj),
        ("apps", "StatefulSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            set_default(obj, "/spec/persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec_defaults(spec);
            }
            each_item(obj, "/spec/volumeClaimTemplates", |t| {
                set_default(t, "/apiVersion", json!("v1"));
                set_default(t, "/kind", json!("PersistentVolumeClaim"));
                set_default(t, "/spec/volumeMode", json!("Filesystem"));
                set_default(t, "/status/phase", json!("Pending"));
            });
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            if obj.pointer("/spec/policyTypes").is_none() && obj.get("spec").is_some() {
                let mut types = vec![json!("Ingress")];
                if obj.pointer("/spec/egress").is_some() {
                    types.push(json!("Egress"));
                }
                obj["spec"]["policyTypes"] = Value::Array(types);
            }
            for dir in ["/spec/ingress", "/spec/egress"] {
                each_item(obj, dir, |r| each_item(r, "/ports", |p| set_default(p, "/protocol", json!("TCP"))));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            each_item(obj, "/subjects", |s| {
                if matches!(s.get("kind").and_then(Value::as_str), Some("User" | "Group")) {
                    set_default(s, "/apiGroup", json!("rbac.authorization.k8s.io"));
                }
            });
        }
        _ => {}
    }
}

fn required(causes: &mut Vec<Cause>, obj: &Value, ptr: &str, field: &str) {
    if obj.pointer(ptr).is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
        causes.push(Cause::new("FieldValueRequired", field, "Required value"));
    }
}

/// `events.k8s.io/v1` Event `note`: at most 1 KiB.
const EVENT_NOTE_MAX_BYTES: usize = 1024;

/// Validation of built-in kinds (a selection of the real rules).
pub fn validate(rt: &ResourceType, new: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = super::admission::validate_metadata(new);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            required(&mut c, new, "/roleRef/name", "roleRef.name");
            required(&mut c, new, "/roleRef/kind", "roleRef.kind");
            if let Some(old) = old {
                if old.get("roleRef") != new.get("roleRef") {
                    c.push(Cause::new("FieldValueInvalid", "roleRef", "Invalid value: \"object\": cannot change roleRef"));
                }
            }
            if let Some(subjects) = new.get("subjects").and_then(Value::as_array) {
                for (i, s) in subjects.iter().enumerate() {
                    required(&mut c, s, "/name", &format!("subjects[{i}].name"));
                    match s.get("kind").and_then(Value::as_str) {
                        Some("User" | "Group" | "ServiceAccount") => {}
                        other => c.push(Cause::new(
                            "FieldValueNotSupported",
                            format!("subjects[{i}].kind"),
                            format!(
                                "Unsupported value: {:?}: supported values: \"ServiceAccount\", \"User\", \"Group\"",
                                other.unwrap_or("")
                            ),
                        )),
                    }
                }
            }
        }
        ("apps", "StatefulSet") => {
            required(&mut c, new, "/spec/selector", "spec.selector");
            if let Some(sel) = new.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
                let labels = new.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
                if !sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
                    c.push(Cause::new(
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        "Invalid value: \"object\": `selector` does not match template `labels`",
                    ));
                }
            }
            if let Some(old) = old {
                let strip = |o: &Value| {
                    let mut s = o.get("spec").cloned().unwrap_or(json!({}));
                    if let Some(m) = s.as_object_mut() {
                        for k in [
                            "replicas",
                            "ordinals",
                            "template",
                            "updateStrategy",
                            "persistentVolumeClaimRetentionPolicy",
                            "minReadySeconds",
                        ] {
                            m.remove(k);
                        }
                    }
                    s
                };
                if strip(old) != strip(new) {
                    c.push(Cause::new(
                        "FieldValueForbidden",
                        "spec",
                        "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    ));
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(old) = old {
                let strip = |o: &Value| {
                    let mut s = o.get("spec").cloned().unwrap_or(json!({}));
                    if let Some(r) = s.pointer_mut("/resources").and_then(Value::as_object_mut) {
                        r.remove("requests");
                    }
                    if let Some(m) = s.as_object_mut() {
                        m.remove("volumeAttributesClassName");
                        m.remove("volumeName");
                    }
                    s
                };
                if strip(old) != strip(new) {
                    c.push(Cause::new(
                        "FieldValueForbidden",
                        "spec",
                        "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                    ));
                }
            }
        }
        ("", "Secret" | "ConfigMap") => {
            if let Some(old) = old {
                if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                    for f in ["data", "stringData", "binaryData"] {
                        if old.get(f) != new.get(f) {
                            c.push(Cause::new("FieldValueForbidden", f, "Forbidden: field is immutable when `immutable` is set"));
                        }
                    }
                }
                if rt.kind == "Secret" && old.get("type") != new.get("type") {
                    c.push(Cause::new(
                        "FieldValueInvalid",
                        "type",
                        format!("Invalid value: {}: field is immutable", new.get("type").cloned().unwrap_or_default()),
                    ));
                }
            }
        }
        ("", "Service") => {
            if let Some(old) = old {
                if old.pointer("/spec/clusterIP") != new.pointer("/spec/clusterIP") {
                    c.push(Cause::new("FieldValueInvalid", "spec.clusterIPs[0]", "Invalid value: \"array\": may not change once set"));
                }
            }
        }
        ("networking.k8s.io", "Ingress") => {
            if let Some(rules) = new.pointer("/spec/rules").and_then(Value::as_array) {
                for (i, r) in rules.iter().enumerate() {
                    if let Some(paths) = r.pointer("/http/paths").and_then(Value::as_array) {
                        for (j, p) in paths.iter().enumerate() {
                            let f = format!("spec.rules[{i}].http.paths[{j}]");
                            if p.get("pathType").is_none() {
                                c.push(Cause::new(
                                    "FieldValueRequired",
                                    format!("{f}.pathType"),
                                    "Required value: pathType must be specified",
                                ));
                            }
                            if p.pointer("/backend/service/name").is_none() && p.pointer("/backend/resource").is_none() {
                                c.push(Cause::new(
                                    "FieldValueRequired",
                                    format!("{f}.backend"),
                                    "Required value: one backend must be specified",
                                ));
                            }
                        }
                    }
                }
            }
        }
        ("events.k8s.io", "Event") => {
            if old.is_none() {
                required(&mut c, new, "/eventTime", "eventTime");
                required(&mut c, new, "/reportingController", "reportingController");
                required(&mut c, new, "/reportingInstance", "reportingInstance");
                required(&mut c, new, "/action", "action");
                required(&mut c, new, "/reason", "reason");
            }
            // Measured in bytes of UTF-8 (Go's len), whatever the message says; the real server
            // reports the field under its core/v1 name.
            if new.get("note").and_then(Value::as_str).is_some_and(|note| note.len() > EVENT_NOTE_MAX_BYTES) {
                c.push(Cause::new("FieldValueInvalid", "message", "Invalid value: \"\": can have at most 1024 characters"));
            }
            if let Some(t) = new.get("type").and_then(Value::as_str) {
                if t != "Normal" && t != "Warning" {
                    c.push(Cause::new("FieldValueInvalid", "type", format!("Invalid value: {t:?}: has invalid value: {t}")));
                }
            }
            let ns = new.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
            match new.pointer("/regarding/namespace").and_then(Value::as_str) {
                Some(rns) if !rns.is_empty() && rns != ns => c.push(Cause::new(
                    "FieldValueInvalid",
                    "regarding.namespace",
                    format!("Invalid value: {rns:?}: does not match event.namespace"),
                )),
                _ => {}
            }
        }
        _ => {}
    }
    c
}

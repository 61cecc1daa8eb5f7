//! Fingerprints: what the operator last applied to an object, and what it wants now, each
//! reduced to one number, so the caches need not keep the objects' contents.
//!
//! The observed side is the object projected onto the fields its `managedFields` entry says the
//! operator's last server-side apply set (`fieldsV1`): exactly the operator's part, whatever
//! others added or the API server defaulted around it. The desired side is the object the
//! operator would apply. Equal fingerprints prove "desired ⊆ observed" and that no field the
//! operator stopped setting is left over; different ones only mean "look closer" (see
//! `apply::needs_apply`): the server may hold a value in another form than the one applied.
//!
//! A credentials Secret's password never reaches a fingerprint: on both sides the password and
//! its encoded form inside the URIs are replaced by the same stand-in before hashing.

use k8s_openapi::ByteString;
use serde_json::{Map, Value};

use crate::{
    controller::caches::watches_metadata_only, database::credentials::percent_encode, database::rotation::PENDING_PASSWORD_KEY,
    desired::ChildKind, hash::Fnv, naming::ANNOTATION_APPLIED_HASH,
};

/// The canonical hash of any JSON value (see `write_canonical`).
pub fn of_value(value: &Value) -> u64 {
    let mut fnv = Fnv::default();
    write_canonical(value, &mut fnv);
    fnv.finish()
}

/// The stand-in for a password on both sides of a comparison. Only characters that
/// percent-encoding leaves alone, so it reads the same inside a URI.
pub const PASSWORD_STAND_IN: &str = "password-stand-in.tenancy.platform.dev";

/// The fingerprint of the object the operator wants, in its applied form (with the
/// applied-hash and tenant-uid annotations): the fields a server-side apply takes ownership
/// of, which leaves out `apiVersion`, `kind` and the object's name and namespace.
pub fn of_desired(kind: ChildKind, applied: &Value) -> u64 {
    let mut object = applied.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("name");
        metadata.remove("namespace");
    }
    if watches_metadata_only(kind) {
        if let Some(map) = object.as_object_mut() {
            for (_, value) in map.iter_mut().filter(|(key, _)| *key != "metadata") {
                *value = field_set(value);
            }
        }
    }
    finish(kind, object)
}

/// For kinds the caches hold without their body (`caches::watches_metadata_only`): the
/// operator's fields of the body as a set, without values (`true` at each leaf), as
/// `fieldsV1` records them. Whoever changes a value the operator applied (an update, a forced
/// apply) takes that field from the operator's set, so the set changes with the value; the
/// metadata keeps its values. Lists are leaves (their members are not compared).
fn field_set(value: &Value) -> Value {
    match value {
        Value::Object(map) if !map.is_empty() => Value::Object(map.iter().map(|(key, sub)| (key.clone(), field_set(sub))).collect()),
        Value::Null => Value::Null,
        _ => Value::Bool(true),
    }
}

/// The body part of a `fieldsV1` set as [`field_set`] gives it for the desired object.
fn owned_field_set(fields: &Value) -> Value {
    let named: Map<String, Value> = fields
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, sub)| key.strip_prefix("f:").map(|name| (name.to_string(), owned_field_set(sub))))
        .collect();
    if named.is_empty() {
        Value::Bool(true)
    } else {
        Value::Object(named)
    }
}

/// The fingerprint of the fields of `object` (a whole object, `metadata` included) that
/// `fields` (the `fieldsV1` of the operator's apply) names.
#[cfg(test)]
pub fn of_observed(kind: ChildKind, object: &Value, fields: &Value) -> u64 {
    let metadata = object.get("metadata").cloned().unwrap_or_default();
    of_applied_fields(kind, object, &metadata, fields)
}

/// The fingerprint of an object's fields that `fields` (the `fieldsV1` of the operator's
/// apply) names: `body` is the object (or, where the caches hold no body, anything: only the
/// field set counts, see [`field_set`]), `metadata` its labels, annotations, finalizers and
/// owner references.
pub fn of_applied_fields(kind: ChildKind, body: &Value, metadata: &Value, fields: &Value) -> u64 {
    let mut projected = if watches_metadata_only(kind) {
        let set = fields.as_object().into_iter().flatten().filter(|(key, _)| *key != "f:metadata");
        Value::Object(set.filter_map(|(key, sub)| Some((key.strip_prefix("f:")?.to_string(), owned_field_set(sub)))).collect())
    } else {
        project(body, fields)
    };
    if let (Some(meta_fields), Some(map)) = (fields.get("f:metadata"), projected.as_object_mut()) {
        map.insert("metadata".into(), project(metadata, meta_fields));
    }
    finish(kind, projected)
}

fn finish(kind: ChildKind, mut object: Value) -> u64 {
    if kind == ChildKind::Secret {
        redact_credentials(&mut object);
    }
    of_value(&object)
}

/// `value` reduced to the fields in `fields`, a `fieldsV1` set: `f:<name>` selects a field of
/// an object, `k:{...}` (associative-list key), `v:<json>` (set member) and `i:<n>` (index)
/// select list members, `.` marks a member that is owned as a whole, and an empty set selects
/// the whole value.
pub fn project(value: &Value, fields: &Value) -> Value {
    let Some(set) = fields.as_object() else { return value.clone() };
    let members: Vec<(&String, &Value)> = set.iter().filter(|(key, _)| key.as_str() != ".").collect();
    if members.is_empty() {
        return value.clone();
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, sub) in members {
                if let Some((name, child)) = key.strip_prefix("f:").and_then(|name| map.get_key_value(name)) {
                    out.insert(name.clone(), project(child, sub));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let selectors: Vec<(Member, &Value)> = members.into_iter().filter_map(|(key, sub)| Some((Member::parse(key)?, sub))).collect();
            let out = items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    selectors.iter().find(|(member, _)| member.selects(index, item)).map(|(_, sub)| project(item, sub))
                })
                .collect();
            Value::Array(out)
        }
        other => other.clone(),
    }
}

/// A list member as `fieldsV1` names it.
enum Member {
    Key(Map<String, Value>),
    Value(Value),
    Index(usize),
}

impl Member {
    fn parse(key: &str) -> Option<Member> {
        if let Some(json) = key.strip_prefix("k:") {
            return serde_json::from_str(json).ok().map(Member::Key);
        }
        if let Some(json) = key.strip_prefix("v:") {
            return serde_json::from_str(json).ok().map(Member::Value);
        }
        key.strip_prefix("i:").and_then(|index| index.parse().ok()).map(Member::Index)
    }

    fn selects(&self, index: usize, item: &Value) -> bool {
        match self {
            // The API server fills in a missing `protocol` before keying a port.
            Member::Key(key) => key.iter().all(|(field, want)| match item.get(field) {
                Some(have) => same(have, want),
                None => field == "protocol" && want.as_str() == Some("TCP"),
            }),
            Member::Value(want) => same(item, want),
            Member::Index(at) => *at == index,
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => canonical_number(x) == canonical_number(y),
        _ => a == b,
    }
}

/// A credentials Secret with its password replaced by a stand-in (the data decoded), and
/// without the applied-hash annotation, which is a hash of the password too.
fn redact_credentials(object: &mut Value) {
    if let Some(annotations) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove(ANNOTATION_APPLIED_HASH);
    }
    let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) else { return };
    let decoded = |value: &Value| {
        serde_json::from_value::<ByteString>(value.clone()).ok().map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
    };
    let Some(password) = data.get("password").and_then(decoded).filter(|p| !p.is_empty()) else { return };
    let encoded = percent_encode(&password);
    for (key, value) in data.iter_mut() {
        let Some(text) = decoded(value) else { continue };
        let redacted = if key == "password" || key == PENDING_PASSWORD_KEY {
            PASSWORD_STAND_IN.to_string()
        } else {
            text.replace(&encoded, PASSWORD_STAND_IN)
        };
        *value = Value::String(redacted);
    }
}

/// Hash `value` in a canonical form: object keys sorted; `null`s, empty objects and empty
/// lists left out (a server drops them as it stores an object); numbers by value.
fn write_canonical(value: &Value, fnv: &mut Fnv) {
    match value {
        Value::Null => fnv.write(b"n"),
        Value::Bool(b) => fnv.write(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            fnv.write(b"#");
            fnv.text(&canonical_number(n));
        }
        Value::String(s) => {
            fnv.write(b"s");
            fnv.text(s);
        }
        Value::Array(items) => {
            fnv.write(b"[");
            fnv.write(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_canonical(item, fnv);
            }
        }
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !vacuous(v)).collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            fnv.write(b"{");
            fnv.write(&(fields.len() as u64).to_le_bytes());
            for (key, field) in fields {
                fnv.text(key);
                write_canonical(field, fnv);
            }
        }
    }
}

fn vacuous(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(vacuous),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn canonical_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        Some(f) => format!("{f:?}"),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hash::hash_str;

    #[test]
    fn projection_keeps_the_operators_fields_and_drops_the_rest() {
        let object = json!({
            "metadata": {"name": "db", "labels": {"a": "1", "kubernetes.io/metadata.name": "x"}},
            "spec": {"clusterIP": "10.0.0.1", "ports": [
                {"port": 5432, "protocol": "TCP", "targetPort": 5432, "name": "pg"},
                {"port": 9187, "protocol": "TCP", "name": "metrics"}
            ]},
            "status": {"loadBalancer": {}}
        });
        let fields = json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":5432,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}}}
        });
        assert_eq!(
            project(&object, &fields),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [{"port": 5432, "targetPort": 5432, "name": "pg"}]}})
        );
    }

    #[test]
    fn a_leaf_keeps_the_whole_value_and_sets_select_members() {
        let object = json!({"spec": {"rules": [{"host": "a"}], "policyTypes": ["Ingress", "Egress"]}});
        let fields = json!({"f:spec": {"f:rules": {}, "f:policyTypes": {"v:\"Ingress\"": {}}}});
        assert_eq!(project(&object, &fields), json!({"spec": {"rules": [{"host": "a"}], "policyTypes": ["Ingress"]}}));
    }

    #[test]
    fn desired_and_observed_agree_when_the_operators_fields_are_as_applied() {
        let applied = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": {"a": "1"}, "annotations": {}},
            "data": {"k": "v"}, "extra": null
        });
        let observed = json!({
            "metadata": {"name": "c", "namespace": "n", "uid": "u", "labels": {"a": "1", "b": "2"}},
            "data": {"k": "v", "other": "x"}
        });
        let fields = json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:k": {}}});
        assert_eq!(of_desired(ChildKind::ConfigMap, &applied), of_observed(ChildKind::ConfigMap, &observed, &fields));
        let drifted = json!({"metadata": {"labels": {"a": "2"}}, "data": {"k": "v"}});
        assert_ne!(of_desired(ChildKind::ConfigMap, &applied), of_observed(ChildKind::ConfigMap, &drifted, &fields));
        let lost = json!({"f:metadata": {"f:labels": {"f:a": {}}}});
        assert_ne!(
            of_desired(ChildKind::ConfigMap, &applied),
            of_observed(ChildKind::ConfigMap, &observed, &lost),
            "a field taken over by someone else is no longer the operator's"
        );
    }

    #[test]
    fn a_kind_held_without_its_body_is_fingerprinted_by_the_operators_field_set() {
        let applied = |value: &str, hash: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "n", "labels": {"a": "1"}, "annotations": {ANNOTATION_APPLIED_HASH: hash}},
                   "data": {"k": value, "j": "x"}})
        };
        let fields = json!({"f:metadata": {"f:labels": {"f:a": {}}, "f:annotations": {"f:tenancy.platform.dev/applied-hash": {}}},
                            "f:data": {".": {}, "f:k": {}, "f:j": {}}});
        // What a metadata-only watch delivers: no body at all.
        let metadata_only = json!({"metadata": {"labels": {"a": "1"}, "annotations": {ANNOTATION_APPLIED_HASH: "h1"}}});
        let wanted = of_desired(ChildKind::ConfigMap, &applied("v", "h1"));
        assert_eq!(of_observed(ChildKind::ConfigMap, &metadata_only, &fields), wanted);
        // The whole object (an apply's response) gives the same number.
        let whole =
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {ANNOTATION_APPLIED_HASH: "h1"}}, "data": {"k": "v", "j": "x"}});
        assert_eq!(of_observed(ChildKind::ConfigMap, &whole, &fields), wanted);
        // Someone else changed `k`: it left the operator's set.
        let taken = json!({"f:metadata": fields["f:metadata"], "f:data": {"f:j": {}}});
        assert_ne!(of_observed(ChildKind::ConfigMap, &metadata_only, &taken), wanted);
        // A new value the operator wants comes with a new applied-hash.
        assert_ne!(of_observed(ChildKind::ConfigMap, &metadata_only, &fields), of_desired(ChildKind::ConfigMap, &applied("w", "h2")));
    }

    #[test]
    fn numbers_compare_by_value() {
        let a = json!({"spec": {"replicas": 1}});
        let b = json!({"spec": {"replicas": 1.0}});
        assert_eq!(of_desired(ChildKind::StatefulSet, &a), of_desired(ChildKind::StatefulSet, &b));
    }

    fn secret(password: &str, host: &str) -> Value {
        let data = crate::database::ConnectionInfo {
            host: host.into(),
            port: 5432,
            dbname: "acme_dev".into(),
            username: "acme".into(),
            require_tls: false,
        }
        .secret_data(password);
        let data: Map<String, Value> =
            data.into_iter().map(|(k, v)| (k, serde_json::to_value(ByteString(v.into_bytes())).unwrap_or_default())).collect();
        json!({"metadata": {"annotations": {ANNOTATION_APPLIED_HASH: desired_hash_of(password)}}, "data": data})
    }

    fn desired_hash_of(password: &str) -> String {
        format!("{:016x}", hash_str(password))
    }

    #[test]
    fn a_password_never_reaches_a_fingerprint() {
        let fields = json!({"f:metadata": {"f:annotations": {}}, "f:data": {}});
        let real = of_observed(ChildKind::Secret, &secret("s3cr3t/&x", "db.acme-dev.svc"), &fields);
        let stand_in = of_desired(ChildKind::Secret, &secret("anything", "db.acme-dev.svc"));
        assert_eq!(real, stand_in, "the same Secret with another password");
        assert_ne!(real, of_desired(ChildKind::Secret, &secret("anything", "elsewhere.svc")), "another host");
    }
}

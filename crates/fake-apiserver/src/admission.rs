//! Admission for custom resources, like the real server's structural-schema handling:
//! prune unknown fields, apply `default`s, validate the OpenAPI v3 schema, then evaluate
//! `x-kubernetes-validations` CEL rules (with `oldSelf` on update). Also `metadata.name`
//! validation for every kind.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use kube::core::cel::{ErrorKind, Validator};
use regex::Regex;
use serde_json::{Map, Value};

use super::errors::Cause;
use super::resources::{NameRule, ResourceType};

const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

type RegexCache = LazyLock<Mutex<HashMap<String, Option<&'static Regex>>>>;

/// The regex `source()` makes, compiled once per process under `key` (`None` if it does not
/// compile): names, labels and schema patterns are checked on every write, and compiling a
/// regex costs far more than matching it. The set of patterns is fixed (the fake's own and
/// the CRDs' schemas), so the compiled ones are kept for good.
fn cached(cache: &RegexCache, key: &str, source: impl FnOnce() -> String) -> Option<&'static Regex> {
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(key) {
        return *re;
    }
    let compiled: Option<&'static Regex> = Regex::new(&source()).ok().map(|re| &*Box::leak(Box::new(re)));
    cache.insert(key.to_string(), compiled);
    compiled
}

/// `pattern` as written (a schema's `pattern` matches anywhere, like Go's regexp).
pub fn regex(pattern: &str) -> Option<&'static Regex> {
    static CACHE: RegexCache = LazyLock::new(Default::default);
    cached(&CACHE, pattern, || pattern.to_string())
}

/// `pattern` matching a whole string.
pub fn whole(pattern: &str) -> Option<&'static Regex> {
    static CACHE: RegexCache = LazyLock::new(Default::default);
    cached(&CACHE, pattern, || format!("^(?:{pattern})$"))
}

/// What CEL rules see of an object: the root's `metadata` holds only `name` and
/// `generateName`, as on the real server (the rest of it, managedFields included, is not
/// converted for nothing).
fn cel_view(obj: &Value) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    map.iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v.as_object()) {
                ("metadata", Some(meta)) => Value::Object(
                    meta.iter()
                        .filter(|(mk, _)| matches!(mk.as_str(), "name" | "generateName"))
                        .map(|(mk, mv)| (mk.clone(), mv.clone()))
                        .collect(),
                ),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect::<Map<String, Value>>()
        .into()
}

/// Prune, default and validate a custom resource. `old` is the stored object on update.
pub fn admit_custom(validator: &Validator, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) -> Result<(), Vec<Cause>> {
    let Some(schema) = rt.schema.as_ref() else {
        return Ok(());
    };
    if let Some(m) = obj.as_object_mut() {
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| OBJECT_META_FIELDS.contains(&k.as_str()));
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let preserve = preserves(schema);
        m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || preserve || props.is_some_and(|p| p.contains_key(k)));
        if let Some(props) = props {
            for (k, v) in m.iter_mut() {
                if k == "metadata" || k == "apiVersion" || k == "kind" {
                    continue;
                }
                if let Some(s) = props.get(k) {
                    prune(s, v);
                }
            }
        }
    }
    default(schema, obj, true);
    let mut causes = Vec::new();
    validate(schema, obj, "", &mut causes, true);
    let structural_ok = causes.is_empty();
    let (view, old_view) = (cel_view(obj), old.map(cel_view));
    let result = match rt.cel.as_deref() {
        Some(compiled) => validator.validate_compiled(compiled, &view, old_view.as_ref()),
        None => validator.validate(schema, &view, old_view.as_ref()),
    };
    if let Err(errors) = result {
        let mut errors = errors.into_vec();
        // The compiled rules are walked in hash order; the real server (and the uncompiled
        // walk) report them field by field in schema order.
        errors.sort_by_cached_key(|e| path_order(&e.field_path));
        for e in errors.iter() {
            if !structural_ok && e.kind != ErrorKind::ValidationFailure {
                continue;
            }
            let field = e.field_path.clone();
            let message = match e.kind {
                ErrorKind::ValidationFailure => {
                    let ty = lookup(obj, &field).map(type_name).unwrap_or("object");
                    format!("Invalid value: \"{ty}\": {}", e.message)
                }
                _ => e.message.clone(),
            };
            let reason = match e.reason.as_deref() {
                Some("FieldValueForbidden") => "FieldValueForbidden",
                Some("FieldValueRequired") => "FieldValueRequired",
                Some("FieldValueDuplicate") => "FieldValueDuplicate",
                _ => "FieldValueInvalid",
            };
            causes.push(Cause::new(reason, field, message));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(causes)
    }
}

/// A sort key for a field path (`spec.items[10].name`): by segment, indices as numbers.
fn path_order(path: &str) -> Vec<(String, usize)> {
    path.split(['.', '['])
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_suffix(']').and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => (String::new(), i),
            None => (s.to_string(), 0),
        })
        .collect()
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

fn prune(schema: &Value, v: &mut Value) {
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true) {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if !preserves(schema) && additional.is_none() {
                m.retain(|k, _| props.is_some_and(|p| p.contains_key(k)));
            }
            for (k, child) in m.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    prune(s, child);
                } else if let Some(a) = additional {
                    prune(a, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for it in items {
                    prune(s, it);
                }
            }
        }
        _ => {}
    }
}

/// Apply schema defaults. Null values of non-nullable fields are dropped first (then defaulted).
fn default(schema: &Value, v: &mut Value, root: bool) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if root && k == "metadata" {
                        continue;
                    }
                    if m.get(k).is_some_and(Value::is_null) && !nullable(ps) {
                        m.remove(k);
                    }
                    if !m.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
                for (k, child) in m.iter_mut() {
                    if root && k == "metadata" {
                        continue;
                    }
                    if let Some(ps) = props.get(k) {
                        default(ps, child, false);
                    }
                }
            }
            if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in m.values_mut() {
                    default(a, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for it in items {
                    default(s, it, false);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// The JSON type name the real server prints in `Invalid value: "<type>"`.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as the real server prints it in field errors.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    if path.is_empty() {
        return Some(cur);
    }
    for part in path.split('.') {
        let (name, idx) = match part.find('[') {
            Some(i) => (&part[..i], Some(&part[i..])),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(idx) = idx {
            for n in idx.split(['[', ']']).filter(|s| !s.is_empty()) {
                cur = cur.get(n.parse::<usize>().ok()?)?;
            }
        }
    }
    Some(cur)
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        _ => true,
    }
}

fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<Cause>, root: bool) {
    let invalid = |errs: &mut Vec<Cause>, msg: String| {
        errs.push(Cause::new("FieldValueInvalid", path, format!("Invalid value: {}: {} in body {msg}", show(v), path)))
    };
    if v.is_null() {
        if !nullable(schema) {
            if let Some(ty) = schema.get("type").and_then(Value::as_str) {
                errs.push(Cause::new(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: \"null\": {path} in body must be of type {ty}: \"null\""),
                ));
            }
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(v.is_string() || type_ok("integer", v)) {
            errs.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!("Invalid value: \"{}\": {path} in body must be of type integer,string: \"{}\"", type_name(v), type_name(v)),
            ));
        }
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        if !type_ok(ty, v) {
            let t = type_name(v);
            errs.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!("Invalid value: \"{t}\": {path} in body must be of type {ty}: \"{t}\""),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().filter(|a| !a.is_null()).map(|a| a.to_string()).collect();
            errs.push(Cause::new(
                "FieldValueNotSupported",
                path,
                format!("Unsupported value: {}: supported values: {}", v, list.join(", ")),
            ));
        }
    }
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if len > max {
                    errs.push(Cause::new("FieldValueTooLong", path, format!("Too long: may not be more than {max} bytes")));
                }
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if len < min {
                    invalid(errs, format!("should be at least {min} chars long"));
                }
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match regex(p) {
                    Some(re) if !re.is_match(s) => invalid(errs, format!("should match '{p}'")),
                    _ => {}
                }
            }
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            let excl_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            let excl_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if f < min || (excl_min && f == min) {
                    let op = if excl_min { "greater than" } else { "greater than or equal to" };
                    invalid(errs, format!("should be {op} {}", trim_num(min)));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if f > max || (excl_max && f == max) {
                    let op = if excl_max { "less than" } else { "less than or equal to" };
                    invalid(errs, format!("should be {op} {}", trim_num(max)));
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("int32") && (f < i32::MIN as f64 || f > i32::MAX as f64) {
                invalid(errs, "must be of type int32".into());
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errs.push(Cause::new("FieldValueTooMany", path, format!("Too many: {}: must have at most {max} items", items.len())));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errs.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {}: {path} in body should have at least {min} items", items.len()),
                    ));
                }
            }
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for (i, it) in items.iter().enumerate() {
                        if items[..i].contains(it) {
                            errs.push(Cause::new("FieldValueDuplicate", format!("{path}[{i}]"), format!("Duplicate value: {}", show(it))));
                        }
                    }
                }
                Some("map") => {
                    let keys: Vec<&str> = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let key_of = |it: &Value| -> Map<String, Value> {
                        keys.iter().filter_map(|k| it.get(*k).map(|v| (k.to_string(), v.clone()))).collect()
                    };
                    for (i, it) in items.iter().enumerate() {
                        let k = key_of(it);
                        if items[..i].iter().any(|o| key_of(o) == k) {
                            let shown: Vec<String> = k.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                            errs.push(Cause::new(
                                "FieldValueDuplicate",
                                format!("{path}[{i}]"),
                                format!("Duplicate value: map[string]interface {{}}{{{}}}", shown.join(", ")),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(s) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    validate(s, it, &format!("{path}[{i}]"), errs, false);
                }
            }
        }
        Value::Object(m) => {
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !m.contains_key(r) {
                        errs.push(Cause::new("FieldValueRequired", join(path, r), "Required value"));
                    }
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                if root && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    validate(s, child, &join(path, k), errs, false);
                } else if let Some(a) = additional {
                    validate(a, child, &join(path, k), errs, false);
                }
            }
        }
        _ => {}
    }
}

fn trim_num(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

/// Validate `metadata.name` (or a `generateName` prefix) as the real server does for the kind.
pub fn validate_name(rt: &ResourceType, name: &str, field: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let invalid = |msg: String| Cause::new("FieldValueInvalid", field, format!("Invalid value: {name:?}: {msg}"));
    let full = |re: &str| whole(re).is_some_and(|r| r.is_match(name));
    match rt.name_rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                out.push(invalid("must be no more than 253 characters".into()));
            }
            if !full(DNS1123_SUBDOMAIN) {
                out.push(invalid(format!(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN}')"
                )));
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                out.push(invalid("must be no more than 63 characters".into()));
            }
            if !full(DNS1123_LABEL) {
                out.push(invalid(format!(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL}')"
                )));
            }
        }
        NameRule::Label1035 => {
            if name.len() > 63 {
                out.push(invalid("must be no more than 63 characters".into()));
            }
            if !full(DNS1035_LABEL) {
                out.push(invalid(format!(
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL}')"
                )));
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                out.push(invalid(format!("may not be '{name}'")));
            } else if name.contains('/') || name.contains('%') {
                out.push(invalid("may not contain '/'".into()));
            }
        }
    }
    out
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
/// `TotalAnnotationSizeLimitB`: keys and values of all annotations together.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// apimachinery's `RegexError`: the message, examples and the regex (its odd spacing too).
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", examples.join(" or "))
}

fn full_match(re: &str, s: &str) -> bool {
    whole(re).is_some_and(|r| r.is_match(s))
}

/// `IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of at most 63.
fn qualified_name_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                if !full_match(DNS1123_SUBDOMAIN_FMT, prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(
                            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            return vec![format!(
                "{} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".into());
    }
    if !name.is_empty() && !full_match(QUALIFIED_NAME_FMT, name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// `IsValidLabelValue`: empty, or at most 63 of `[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !full_match(LABEL_VALUE_FMT, value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// `ValidateObjectMeta`'s label and annotation checks, which the real server applies to
/// every kind: `metadata.labels: Invalid value: "...": must be no more than 63 characters`.
pub fn validate_metadata(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let invalid = |value: &str, msg: &str| Cause::new("FieldValueInvalid", "metadata.labels", format!("Invalid value: {value:?}: {msg}"));
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            causes.extend(qualified_name_errors(k).iter().map(|m| invalid(k, m)));
            let value = v.as_str().unwrap_or_default();
            causes.extend(label_value_errors(value).iter().map(|m| invalid(value, m)));
        }
    }
    if let Some(annotations) = obj.pointer("/metadata/annotations").and_then(Value::as_object) {
        let size: usize = annotations.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
        if size > ANNOTATIONS_MAX_BYTES {
            causes.push(Cause::new(
                "FieldValueTooLong",
                "metadata.annotations",
                format!("Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes"),
            ));
        }
    }
    causes
}

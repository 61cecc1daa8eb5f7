//! ValidatingAdmissionPolicies (`admissionregistration.k8s.io/v1`) as the real server's
//! validating-policy admission plugin applies them to create, update and delete requests:
//! bindings select policies, `matchConstraints`/`matchResources` select requests,
//! `matchConditions` narrow them, `validations` are evaluated with kube's CEL engine
//! (`object`, `oldObject`, `request`, `params`, `namespaceObject`), and a `Deny` binding
//! refuses with the plugin's message. On DELETE `object` is null and `oldObject` the object
//! being deleted, as on the real server.

use std::collections::HashMap;
use std::sync::Arc;

use kube::core::cel::cel::{self, Program};
use kube::core::cel::KubeCelExt;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::rbac::UserInfo;
use super::resources::ResourceType;
use super::selectors::LabelSelector;
use super::store::State;

pub const GROUP: &str = "admissionregistration.k8s.io";

/// What is being admitted.
pub struct Request<'a> {
    pub rt: &'a ResourceType,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// `Value::Null` for DELETE.
    pub object: &'a Value,
    pub old_object: Option<&'a Value>,
    pub user: &'a UserInfo,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn any_or(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == "*" || x == item)
}

/// One `resourceRules` entry against the request.
fn rule_matches(rule: &Value, req: &Request) -> bool {
    let resource = if req.subresource.is_empty() { req.rt.plural.clone() } else { format!("{}/{}", req.rt.plural, req.subresource) };
    let resources = strings(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        r == "*" && req.subresource.is_empty()
            || *r == resource
            || r == "*/*"
            || r.strip_prefix("*/").is_some_and(|s| s == req.subresource)
            || r.strip_suffix("/*").is_some_and(|p| p == req.rt.plural)
    });
    let names = strings(rule.get("resourceNames"));
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !req.rt.namespaced,
        "Namespaced" => req.rt.namespaced,
        _ => true,
    };
    any_or(&strings(rule.get("apiGroups")), &req.rt.group)
        && any_or(&strings(rule.get("apiVersions")), &req.rt.version)
        && any_or(&strings(rule.get("operations")), req.operation)
        && resource_ok
        && (names.is_empty() || names.iter().any(|n| n == req.name))
        && scope_ok
}

fn selector_matches(selector: Option<&Value>, labels: &Value) -> bool {
    let Some(selector) = selector.filter(|s| s.as_object().is_some_and(|m| !m.is_empty())) else {
        return true;
    };
    let as_obj = json!({"metadata": {"labels": labels}});
    LabelSelector::from_label_selector(selector).is_some_and(|s| s.matches(&as_obj))
}

/// `matchConstraints` of a policy or `matchResources` of a binding (absent: everything).
fn resources_match(state: &State, m: Option<&Value>, req: &Request) -> bool {
    let Some(m) = m else {
        return true;
    };
    let included = m.get("resourceRules").and_then(Value::as_array).is_none_or(|rules| rules.iter().any(|r| rule_matches(r, req)));
    let excluded = m.get("excludeResourceRules").and_then(Value::as_array).is_some_and(|rules| rules.iter().any(|r| rule_matches(r, req)));
    // The real plugin matches objectSelector against the new object, or the old one on DELETE.
    let subject = if req.object.is_null() { req.old_object.unwrap_or(req.object) } else { req.object };
    let object_labels = subject.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    let namespace_labels = if req.rt.namespaced {
        state.namespace_state(req.namespace).and_then(|n| n.pointer("/metadata/labels").cloned()).unwrap_or(json!({}))
    } else {
        json!({})
    };
    included
        && !excluded
        && selector_matches(m.get("objectSelector"), &object_labels)
        && (!req.rt.namespaced || selector_matches(m.get("namespaceSelector"), &namespace_labels))
}

/// The `request` variable: what the real plugin binds (`userInfo`, operation, names, kind,
/// resource).
fn request_value(req: &Request) -> Value {
    json!({
        "operation": req.operation,
        "userInfo": {"username": req.user.name, "uid": "", "groups": req.user.groups},
        "name": req.name,
        "namespace": req.namespace,
        "dryRun": false,
        "kind": {"group": req.rt.group, "version": req.rt.version, "kind": req.rt.kind},
        "resource": {"group": req.rt.group, "version": req.rt.version, "resource": req.rt.plural},
        "subResource": req.subresource,
    })
}

/// A JSON value as CEL sees it. Map keys stay as they are: label, annotation and data keys
/// such as `tenancy.platform.dev/tenant` are looked up verbatim on the real server (escaping
/// like `__dot__` applies to schema property names only), which is why the fake does not use
/// kube's `VapEvaluator` (it escapes every key).
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => {
            let map: HashMap<cel::objects::Key, cel::Value> =
                fields.iter().map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// The variables of one admission request, bound once for all of a policy's expressions.
struct Bindings<'a>(cel::Context<'a>);

impl Bindings<'_> {
    fn new(variables: &[(&str, Option<&Value>)]) -> Self {
        let mut ctx = cel::Context::default().with_all();
        for (name, value) in variables {
            if let Some(value) = value {
                ctx.add_variable_from_value(*name, to_cel(value));
            }
        }
        Bindings(ctx)
    }

    /// A validation or match condition: `Ok(passed)`, or the evaluation error.
    fn check(&self, expression: &str) -> Result<bool, String> {
        let program = Program::compile(expression).map_err(|e| format!("compilation failed: {e}"))?;
        match program.execute(&self.0) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("expression returned non-boolean: {other:?}")),
            Err(e) => Err(format!("evaluation error: {e}")),
        }
    }

    /// A `messageExpression`; `None` when it fails or gives no string (the message is used).
    fn message(&self, expression: &str) -> Option<String> {
        match Program::compile(expression).ok()?.execute(&self.0) {
            Ok(cel::Value::String(s)) => Some((*s).clone()),
            _ => None,
        }
    }
}

/// The `params` object a binding's `paramRef` names, if the policy has a `paramKind`.
fn params(state: &State, policy: &Value, binding: &Value, req: &Request) -> Option<Value> {
    let kind = policy.pointer("/spec/paramKind")?;
    let rt = state.registry.find_kind(kind.get("apiVersion")?.as_str()?, kind.get("kind")?.as_str()?)?;
    let name = binding.pointer("/spec/paramRef/name")?.as_str()?;
    let ns = binding.pointer("/spec/paramRef/namespace").and_then(Value::as_str).unwrap_or(if rt.namespaced { req.namespace } else { "" });
    state.lookup(rt, ns, name).map(|o| State::present(rt, o))
}

/// Refuses the request as the first `Deny` binding whose policy fails does.
pub fn admit(state: &State, req: &Request) -> Result<(), ApiError> {
    let (Some(policies), Some(bindings)) = (
        state.objects.get(&(GROUP.to_string(), "validatingadmissionpolicies".to_string())),
        state.objects.get(&(GROUP.to_string(), "validatingadmissionpolicybindings".to_string())),
    ) else {
        return Ok(());
    };
    for binding in bindings.values() {
        let actions = strings(binding.pointer("/spec/validationActions"));
        if !actions.iter().any(|a| a == "Deny") {
            continue;
        }
        let policy_name = binding.pointer("/spec/policyName").and_then(Value::as_str).unwrap_or_default();
        let Some(policy) = policies.get(&(String::new(), policy_name.to_string())) else {
            continue;
        };
        if !resources_match(state, policy.pointer("/spec/matchConstraints"), req)
            || !resources_match(state, binding.pointer("/spec/matchResources"), req)
        {
            continue;
        }
        let binding_name = binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let deny = |detail: String, code: u16, reason: &str| {
            let text = format!("ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {detail}");
            let mut err = ApiError::forbidden(&req.rt.group, &req.rt.plural, req.name, &text);
            err.code = code;
            err.reason = reason.to_string();
            if let Some(d) = err.details.as_mut() {
                d["causes"] = json!([{"message": text}]);
            }
            err
        };
        let fail_closed = policy.pointer("/spec/failurePolicy").and_then(Value::as_str) != Some("Ignore");
        let wants_params = policy.pointer("/spec/paramKind").is_some() && binding.pointer("/spec/paramRef").is_some();
        let params = match params(state, policy, binding, req) {
            Some(p) => Some(p),
            // The real plugin: a binding whose parameter is missing denies, or is skipped with
            // `parameterNotFoundAction: Allow`.
            None if wants_params => {
                if binding.pointer("/spec/paramRef/parameterNotFoundAction").and_then(Value::as_str) == Some("Deny") {
                    return Err(deny("no params found for policy binding with `Deny` parameterNotFoundAction".into(), 403, "Forbidden"));
                }
                continue;
            }
            None => None,
        };
        // `namespaceObject`: the namespace of a namespaced request (null for cluster-scoped).
        let namespace = if req.rt.namespaced { state.namespace_state(req.namespace).map(|n| (**n).clone()) } else { None };
        let request = request_value(req);
        let bindings = Bindings::new(&[
            ("object", Some(req.object)),
            ("oldObject", Some(req.old_object.unwrap_or(&Value::Null))),
            ("request", Some(&request)),
            ("params", params.as_ref()),
            ("namespaceObject", Some(namespace.as_ref().unwrap_or(&Value::Null))),
        ]);
        // A false match condition skips the policy; one that errs (and none false) is a
        // failure under the policy's failurePolicy.
        let conditions: Vec<(&str, Result<bool, String>)> = policy
            .pointer("/spec/matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("expression")?.as_str())
            .map(|expression| (expression, bindings.check(expression)))
            .collect();
        if conditions.iter().any(|(_, result)| matches!(result, Ok(false))) {
            continue;
        }
        if let Some((expression, Err(why))) = conditions.iter().find(|(_, result)| result.is_err()) {
            if fail_closed {
                return Err(deny(format!("failed to evaluate match condition {expression:?}: {why}"), 403, "Forbidden"));
            }
            continue;
        }
        let validations = policy.pointer("/spec/validations").and_then(Value::as_array).cloned().unwrap_or_default();
        for v in &validations {
            let Some(expression) = v.get("expression").and_then(Value::as_str) else {
                continue;
            };
            // The plugin's message when a validation gives none: the expression itself.
            let message =
                v.get("message").and_then(Value::as_str).map(String::from).unwrap_or_else(|| format!("failed expression: {expression}"));
            let detail = match bindings.check(expression) {
                Ok(true) => continue,
                // An empty messageExpression result falls back to the message.
                Ok(false) => v
                    .get("messageExpression")
                    .and_then(Value::as_str)
                    .and_then(|m| bindings.message(m))
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or(message),
                Err(error) => error,
            };
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or("Invalid");
            let code = match reason {
                "Unauthorized" => 401,
                "Forbidden" => 403,
                "RequestEntityTooLarge" => 413,
                _ => 422,
            };
            return Err(deny(detail, code, reason));
        }
    }
    Ok(())
}

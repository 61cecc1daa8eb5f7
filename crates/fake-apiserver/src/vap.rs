//! ValidatingAdmissionPolicies (`admissionregistration.k8s.io/v1`) as the real server's
//! validating-policy admission plugin applies them to create, update and delete requests:
//! bindings select policies, `matchConstraints`/`matchResources` select requests,
//! `matchConditions` narrow them, `validations` are evaluated with kube's CEL functions
//! (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `authorizer`; map keys such
//! as `tenancy.platform.dev/tenant` are seen verbatim, as on the real server), and a `Deny`
//! binding refuses with the plugin's message. On DELETE `object` is null and `oldObject` the
//! object being deleted, as on the real server.

use serde_json::{json, Value};

use super::cel_authorizer::Evaluation;
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

/// The `request` variable: the admission request as the real plugin shows it.
fn request_variable(req: &Request) -> Value {
    json!({
        "operation": req.operation,
        "userInfo": {"username": req.user.name, "uid": "", "groups": req.user.groups},
        "name": req.name,
        "namespace": req.namespace,
        "dryRun": false,
        "subResource": req.subresource,
        "kind": {"group": req.rt.group, "version": req.rt.version, "kind": req.rt.kind},
        "resource": {"group": req.rt.group, "version": req.rt.version, "resource": req.rt.plural},
    })
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
        let mut variables = json!({
            "object": req.object,
            "oldObject": req.old_object.cloned().unwrap_or(Value::Null),
            "request": request_variable(req),
        });
        let wants_params = policy.pointer("/spec/paramKind").is_some() && binding.pointer("/spec/paramRef").is_some();
        match params(state, policy, binding, req) {
            Some(p) => variables["params"] = p,
            // The real plugin: a binding whose parameter is missing denies, or is skipped with
            // `parameterNotFoundAction: Allow`.
            None if wants_params => {
                if binding.pointer("/spec/paramRef/parameterNotFoundAction").and_then(Value::as_str) == Some("Deny") {
                    return Err(deny("no params found for policy binding with `Deny` parameterNotFoundAction".into(), 403, "Forbidden"));
                }
                continue;
            }
            None => {}
        }
        // `namespaceObject`: the namespace of a namespaced request (null for cluster-scoped).
        variables["namespaceObject"] = match req.rt.namespaced.then(|| state.namespace_state(req.namespace)).flatten() {
            Some(ns) => Value::clone(ns),
            None => Value::Null,
        };
        let evaluation = Evaluation { state, user: req.user, variables: &variables };
        // A false match condition skips the policy; one that errs (and none false) is a
        // failure under the policy's failurePolicy.
        let conditions: Vec<&str> = policy
            .pointer("/spec/matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("expression")?.as_str())
            .collect();
        let results = evaluation.run(&conditions);
        if results.iter().any(|r| matches!(r, Ok(false))) {
            continue;
        }
        if let Some((expression, Err(why))) = conditions.iter().zip(&results).find(|(_, r)| r.is_err()) {
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
            let passed = match evaluation.run(&[expression]).into_iter().next() {
                Some(Ok(passed)) => passed,
                // An expression that errs fails the validation (failurePolicy Fail) or is
                // skipped (Ignore), as in the real plugin.
                Some(Err(_)) => !fail_closed,
                None => true,
            };
            if passed {
                continue;
            }
            // The plugin's message when a validation gives none: the expression itself; an
            // empty messageExpression result falls back to it.
            let message =
                v.get("message").and_then(Value::as_str).map(String::from).unwrap_or_else(|| format!("failed expression: {expression}"));
            let detail = v
                .get("messageExpression")
                .and_then(Value::as_str)
                .and_then(|m| evaluation.message(m))
                .filter(|m| !m.trim().is_empty())
                .unwrap_or(message);
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

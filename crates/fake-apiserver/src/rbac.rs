//! Authorization as the real API server does it with RBAC: the authorizer of
//! `plugin/pkg/auth/authorizer/rbac` (rules of the Roles and ClusterRoles bound to the user),
//! the 403 message of `endpoints/handlers/responsewriters`, and the escalation checks of
//! `pkg/registry/rbac` (`bind` / `escalate`, or holding every granted permission already).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::errors::{ApiError, ApiResult};
use super::resources::ResourceType;
use super::store::State;

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// Members bypass authorization and escalation checks, as on the real server.
pub const PRIVILEGED_GROUP: &str = "system:masters";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Who makes a request, once authenticated (and impersonated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// An authenticated user: `groups` plus `system:authenticated`.
    pub fn user(name: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.into());
        }
        UserInfo { name: name.into(), groups }
    }

    /// What the token of ServiceAccount `namespace/name` authenticates as.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo {
            name: format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}"), AUTHENTICATED_GROUP.into()],
        }
    }

    /// A request without credentials.
    pub fn anonymous() -> Self {
        UserInfo { name: ANONYMOUS_USER.into(), groups: vec![UNAUTHENTICATED_GROUP.into()] }
    }

    pub fn is_privileged(&self) -> bool {
        self.groups.iter().any(|g| g == PRIVILEGED_GROUP)
    }

    /// `(namespace, name)` when this is a ServiceAccount's user name.
    pub fn as_service_account(&self) -> Option<(&str, &str)> {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)?
            .split_once(':')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'))
    }
}

/// What a request asks to do, as the authorizer sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// Empty for cluster-scoped requests and lists across all namespaces.
    pub namespace: String,
    pub name: String,
    /// The URL path of a non-resource request (`/version`, `/apis`), else `None`.
    pub path: Option<String>,
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            path: None,
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes { verb: verb.into(), path: Some(path.into()), ..Default::default() }
    }

    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    format!("[{}]", list.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
}

impl PolicyRule {
    pub fn from_value(v: &Value) -> Self {
        PolicyRule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        has(&self.verbs, "*") || has(&self.verbs, verb)
    }

    /// `RuleAllows`: `*` in verbs, groups and resources; `*/sub` for a subresource of any
    /// resource; resourceNames restrict to requests naming one of them; nonResourceURLs match
    /// exactly or by a trailing `*`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if let Some(path) = &a.path {
            return self.verb_matches(&a.verb)
                && self
                    .non_resource_urls
                    .iter()
                    .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p)));
        }
        let combined = a.combined_resource();
        let resource_ok = self
            .resources
            .iter()
            .any(|r| r == "*" || *r == combined || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str())));
        let name_ok = self.resource_names.is_empty() || has(&self.resource_names, &a.name);
        self.verb_matches(&a.verb) && (has(&self.api_groups, "*") || has(&self.api_groups, &a.group)) && resource_ok && name_ok
    }

    /// `rbacv1helpers.CompactString`, as escalation errors print the missing rules.
    fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", go_quoted(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// `BreakdownRule`: one rule per group × resource × verb (× name), and per URL × verb.
    fn breakdown(&self) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        let one = |s: &String| vec![s.clone()];
        for g in &self.api_groups {
            for r in &self.resources {
                for v in &self.verbs {
                    let base = PolicyRule { verbs: one(v), api_groups: one(g), resources: one(r), ..Default::default() };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for n in &self.resource_names {
                            out.push(PolicyRule { resource_names: one(n), ..base.clone() });
                        }
                    }
                }
            }
        }
        for u in &self.non_resource_urls {
            for v in &self.verbs {
                out.push(PolicyRule { verbs: one(v), non_resource_urls: one(u), ..Default::default() });
            }
        }
        out
    }

    /// `ruleCovers`: whether holding `self` includes everything `sub` grants.
    fn covers(&self, sub: &PolicyRule) -> bool {
        let all = |owner: &[String], wanted: &[String], star: &str| has(owner, star) || wanted.iter().all(|w| has(owner, w));
        let resources = has(&self.resources, "*")
            || sub.resources.iter().all(|r| {
                has(&self.resources, r) || r.split_once('/').is_some_and(|(_, subres)| has(&self.resources, &format!("*/{subres}")))
            });
        let urls = sub
            .non_resource_urls
            .iter()
            .all(|u| self.non_resource_urls.iter().any(|o| o == "*" || o == u || o.strip_suffix('*').is_some_and(|p| u.starts_with(p))));
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || sub.resource_names.iter().all(|n| has(&self.resource_names, n))
        };
        all(&self.verbs, &sub.verbs, "*") && all(&self.api_groups, &sub.api_groups, "*") && resources && urls && names
    }
}

/// `CompactRules`: simple single-resource rules that differ only in verbs are merged.
fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let simple = r.api_groups.len() == 1 && r.resources.len() == 1 && r.resource_names.len() <= 1 && r.non_resource_urls.is_empty();
        let same = |o: &&mut PolicyRule| {
            o.api_groups == r.api_groups
                && o.resources == r.resources
                && o.resource_names == r.resource_names
                && o.non_resource_urls.is_empty()
        };
        match out.iter_mut().find(|o| simple && same(o)) {
            Some(o) => {
                for v in &r.verbs {
                    if !has(&o.verbs, v) {
                        o.verbs.push(v.clone());
                    }
                }
            }
            None => out.push(r),
        }
    }
    out
}

fn objects<'a>(state: &'a State, plural: &str) -> Option<&'a BTreeMap<(String, String), Arc<Value>>> {
    state.objects.get(&(RBAC_GROUP.to_string(), plural.to_string()))
}

fn applies_to(binding: &Value, user: &UserInfo, namespace: &str) -> bool {
    binding.get("subjects").and_then(Value::as_array).is_some_and(|subjects| {
        subjects.iter().any(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            match s.get("kind").and_then(Value::as_str) {
                Some("User") => user.name == name,
                Some("Group") => has(&user.groups, name),
                Some("ServiceAccount") => {
                    // A subject without a namespace means the binding's own namespace.
                    let ns = s.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(namespace);
                    !ns.is_empty() && user.as_service_account() == Some((ns, name))
                }
                _ => false,
            }
        })
    })
}

/// Rules of the role a binding in `namespace` refers to; `Err` carries the not-found message
/// the authorizer's informer-backed resolver reports (singular resource names).
fn role_ref_rules(state: &State, role_ref: &Value, namespace: &str) -> Result<Vec<PolicyRule>, String> {
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or_default();
    let (plural, singular, ns) = match role_ref.get("kind").and_then(Value::as_str) {
        Some("Role") => ("roles", "role", namespace),
        _ => ("clusterroles", "clusterrole", ""),
    };
    let role = objects(state, plural).and_then(|m| m.get(&(ns.to_string(), name.to_string())));
    match role {
        Some(role) => {
            Ok(role.get("rules").and_then(Value::as_array).map(|r| r.iter().map(PolicyRule::from_value).collect()).unwrap_or_default())
        }
        None => Err(format!("{singular}.{RBAC_GROUP} {name:?} not found")),
    }
}

/// The rules ClusterRoleBindings give a user, and the errors met resolving them.
pub type ClusterRules = Arc<(Vec<PolicyRule>, Vec<String>)>;
/// A user as far as RBAC is concerned: name and groups.
pub type UserKey = (String, Vec<String>);

/// The rules of the ClusterRoleBindings that apply to `user`, from a cache kept until the next
/// change of any RBAC object: every request is authorized, and resolving the bindings anew
/// each time would cost more than the request itself.
fn cluster_rules(state: &State, user: &UserInfo) -> ClusterRules {
    let key = (user.name.clone(), user.groups.clone());
    if let Some((generation, rules)) = state.rbac_cache.borrow().get(&key) {
        if *generation == state.rbac_generation {
            return rules.clone();
        }
    }
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for binding in objects(state, "clusterrolebindings").into_iter().flat_map(|m| m.values()) {
        if applies_to(binding, user, "") {
            match binding.get("roleRef").map(|r| role_ref_rules(state, r, "")) {
                Some(Ok(r)) => rules.extend(r),
                Some(Err(e)) => errors.push(e),
                None => {}
            }
        }
    }
    let rules: ClusterRules = Arc::new((rules, errors));
    state.rbac_cache.borrow_mut().insert(key, (state.rbac_generation, rules.clone()));
    rules
}

/// Every rule that applies to `user` in `namespace` (cluster-wide ones included), and the
/// errors met resolving them (bindings to missing roles).
pub fn rules_for(state: &State, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
    let cluster = cluster_rules(state, user);
    let mut rules = cluster.0.clone();
    let mut errors = cluster.1.clone();
    let mut add = |binding: &Value, ns: &str| match binding.get("roleRef").map(|r| role_ref_rules(state, r, ns)) {
        Some(Ok(r)) => rules.extend(r),
        Some(Err(e)) => errors.push(e),
        None => {}
    };
    if !namespace.is_empty() {
        if let Some(bindings) = objects(state, "rolebindings") {
            let from = (namespace.to_string(), String::new());
            for ((ns, _), binding) in bindings.range(from..).take_while(|((ns, _), _)| ns == namespace) {
                if applies_to(binding, user, ns) {
                    add(binding, ns);
                }
            }
        }
    }
    (rules, errors)
}

/// Allowed, or the reason text the RBAC authorizer gives when it is not (often empty).
pub fn authorize(state: &State, user: &UserInfo, a: &Attributes) -> Result<(), String> {
    if user.is_privileged() {
        return Ok(());
    }
    // Most requests are allowed by a cluster-wide rule: try those before copying anything.
    let cluster = cluster_rules(state, user);
    if cluster.0.iter().any(|r| r.allows(a)) {
        return Ok(());
    }
    let (rules, errors) = rules_for(state, user, &a.namespace);
    if rules.iter().any(|r| r.allows(a)) {
        return Ok(());
    }
    Err(match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    })
}

/// The 403 the real server answers a denied request with (`responsewriters.Forbidden`).
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let mut msg = match &a.path {
        Some(path) => format!("User {:?} cannot {} path {path:?}", user.name, a.verb),
        None if !a.namespace.is_empty() => format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name,
            a.verb,
            a.combined_resource(),
            a.group,
            a.namespace
        ),
        None => format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name,
            a.verb,
            a.combined_resource(),
            a.group
        ),
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    if a.path.is_some() {
        return ApiError::forbidden("", "", "", &msg);
    }
    ApiError::forbidden(&a.group, &a.resource, &a.name, &msg)
}

/// `ConfirmNoEscalation`: `user` must already hold every permission of `rules` in `namespace`.
fn confirm_no_escalation(state: &State, user: &UserInfo, namespace: &str, rules: &[PolicyRule]) -> Result<(), String> {
    let (owned, errors) = rules_for(state, user, namespace);
    let missing: Vec<PolicyRule> =
        rules.iter().flat_map(PolicyRule::breakdown).filter(|wanted| !owned.iter().any(|o| o.covers(wanted))).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(missing).iter().map(PolicyRule::compact_string).collect();
    lines.sort();
    lines.dedup();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// `IsOnlyMutatingGCFields`: an update that changes only owner references and finalizers
/// (what the garbage collector does) needs no escalation check.
fn only_gc_fields(new: &Value, old: &Value) -> bool {
    let strip = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["ownerReferences", "finalizers", "managedFields", "resourceVersion", "selfLink"] {
                m.remove(k);
            }
        }
        o
    };
    strip(new) == strip(old)
}

/// The registry's escalation checks on writes of Roles, ClusterRoles and their bindings,
/// made once the object to store is known (after patches and defaults).
pub fn check_escalation(state: &State, rt: &ResourceType, obj: &Value, old: Option<&Value>, user: &UserInfo) -> ApiResult<()> {
    if rt.group != RBAC_GROUP || user.is_privileged() || old.is_some_and(|old| only_gc_fields(obj, old)) {
        return Ok(());
    }
    let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let denied = |reason: String| ApiError::forbidden(&rt.group, &rt.plural, name, &reason);
    match rt.kind.as_str() {
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref = obj.get("roleRef").cloned().unwrap_or(Value::Null);
            let role_name = role_ref.get("name").and_then(Value::as_str).unwrap_or_default();
            let role_plural = if role_ref.get("kind").and_then(Value::as_str) == Some("Role") { "roles" } else { "clusterroles" };
            let bind = Attributes::resource("bind", RBAC_GROUP, role_plural, namespace, role_name);
            if authorize(state, user, &bind).is_ok() {
                return Ok(());
            }
            // The registry reads the role from storage: a missing one is its plain 404.
            let rules = role_ref_rules(state, &role_ref, namespace).map_err(|_| {
                let role_rt = state.registry.find(RBAC_GROUP, "v1", role_plural).cloned();
                match role_rt {
                    Some(role_rt) => ApiError::not_found(&role_rt, role_name),
                    None => ApiError::new(404, "NotFound", format!("{role_plural}.{RBAC_GROUP} {role_name:?} not found")),
                }
            })?;
            confirm_no_escalation(state, user, namespace, &rules).map_err(denied)
        }
        "Role" | "ClusterRole" => {
            let escalate = Attributes::resource("escalate", RBAC_GROUP, &rt.plural, namespace, name);
            if authorize(state, user, &escalate).is_ok() {
                return Ok(());
            }
            let rules: Vec<PolicyRule> =
                obj.get("rules").and_then(Value::as_array).map(|r| r.iter().map(PolicyRule::from_value).collect()).unwrap_or_default();
            confirm_no_escalation(state, user, namespace, &rules).map_err(denied)
        }
        _ => Ok(()),
    }
}

/// The bootstrap roles every cluster has that matter to a client: discovery for
/// authenticated users and version/health for everyone (`system:discovery`,
/// `system:public-info-viewer`).
pub fn bootstrap_policy() -> Vec<Value> {
    let role = |name: &str, urls: &[&str]| {
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": [{"nonResourceURLs": urls, "verbs": ["get"]}],
        })
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups.iter().map(|g| serde_json::json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g})).collect();
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        })
    };
    vec![
        role(
            "system:discovery",
            &["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
        ),
        binding("system:discovery", &[AUTHENTICATED_GROUP]),
        role("system:public-info-viewer", &["/healthz", "/livez", "/readyz", "/version", "/version/"]),
        binding("system:public-info-viewer", &[AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP]),
    ]
}

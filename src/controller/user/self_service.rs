//! Whether users may edit their own TenantUser: only while the shipped ValidatingAdmissionPolicy
//! (`deploy/admission/`) and its binding are installed as shipped. Self-edit fails closed: the
//! policy is what keeps a user from changing their own `roles`, so a missing, disabled,
//! narrowed or altered policy or binding makes every user's self-service Role read-only, and
//! their status says why (condition `SelfService`). The policy and the binding are watched by
//! name; a change re-reconciles every user, so revocation follows at once.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{NamedRuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use kube::{
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tokio::sync::watch;

use crate::{desired::rbac::MANAGE_USERS_VERB, metrics::Metrics};

/// Name of the shipped policy and of its binding.
pub const POLICY: &str = "tenantuser-self-service.tenancy.platform.dev";
pub const BINDING: &str = POLICY;

/// What the operator knows about the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelfService {
    /// Not read yet (the watches have not listed).
    Unknown,
    /// Installed as shipped: users may patch their own TenantUser.
    Verified,
    /// Users may only read their own TenantUser; why, for a person to act on.
    Withheld(String),
}

impl SelfService {
    pub fn allows_self_edit(&self) -> bool {
        *self == SelfService::Verified
    }
}

/// The question every guarded field's validation asks the authorizer.
fn may_manage() -> String {
    format!(
        "authorizer.group('tenancy.platform.dev').resource('tenantusers').namespace(request.namespace).check('{MANAGE_USERS_VERB}').allowed()"
    )
}

/// The validations the shipped policy holds (their expressions), each of which must be there.
pub fn expected_validations() -> Vec<String> {
    let unchanged = |field: &str, list: bool| {
        if list {
            format!("(has(object.spec.{field}) ? object.spec.{field} : []) == (has(oldObject.spec.{field}) ? oldObject.spec.{field} : [])")
        } else {
            format!("object.spec.{field} == oldObject.spec.{field}")
        }
    };
    let mut expected: Vec<String> = [("username", false), ("email", false), ("roles", true), ("customRoles", true)]
        .into_iter()
        .map(|(field, list)| format!("request.operation != 'UPDATE' || {} || {}", unchanged(field, list), may_manage()))
        .collect();
    expected.push(
        "(request.operation == 'UPDATE' && object.spec.email == oldObject.spec.email) || \
         !request.userInfo.username.lowerAscii().endsWith(object.spec.email.lowerAscii())"
            .to_string(),
    );
    expected.push(format!(
        "request.operation != 'UPDATE' || !request.userInfo.username.lowerAscii().endsWith(oldObject.spec.email.lowerAscii()) || ({} && {} && {})",
        unchanged("username", false),
        unchanged("roles", true),
        unchanged("customRoles", true)
    ));
    expected
}

/// Expressions compared as written, whitespace aside (YAML folding may reflow them).
fn normalised(expression: &str) -> String {
    expression.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `rule` selects creates and updates of every TenantUser.
fn covers_tenantusers(rule: &NamedRuleWithOperations) -> bool {
    let has = |list: &Option<Vec<String>>, item: &str| list.as_ref().is_some_and(|l| l.iter().any(|x| x == "*" || x == item));
    has(&rule.api_groups, "tenancy.platform.dev")
        && has(&rule.api_versions, "v1alpha1")
        && has(&rule.operations, "CREATE")
        && has(&rule.operations, "UPDATE")
        && has(&rule.resources, "tenantusers")
        && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
        && rule.scope.as_deref().is_none_or(|scope| scope == "*" || scope == "Namespaced")
}

fn selects_everything(selector: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> bool {
    selector
        .as_ref()
        .is_none_or(|s| s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty()))
}

/// Whether the policy and binding found hold what self-edit relies on; the problem otherwise.
pub fn verify(policy: Option<&ValidatingAdmissionPolicy>, binding: Option<&ValidatingAdmissionPolicyBinding>) -> Result<(), String> {
    let how = "install deploy/admission/ (Helm: selfServicePolicy.enabled=true) unchanged";
    let policy = policy.ok_or_else(|| format!("the ValidatingAdmissionPolicy {POLICY} is not installed; {how}"))?;
    if policy.metadata.deletion_timestamp.is_some() {
        return Err(format!("the ValidatingAdmissionPolicy {POLICY} is being deleted; {how}"));
    }
    let spec = policy.spec.as_ref().ok_or_else(|| format!("the ValidatingAdmissionPolicy {POLICY} has no spec; {how}"))?;
    let altered = |what: &str| Err(format!("the ValidatingAdmissionPolicy {POLICY} {what}; {how}"));
    if spec.failure_policy.as_deref().is_some_and(|p| p != "Fail") {
        return altered("does not fail closed (failurePolicy is not Fail)");
    }
    if spec.param_kind.is_some() {
        return altered("has a paramKind (the shipped policy has no parameter)");
    }
    if spec.match_conditions.as_ref().is_some_and(|c| !c.is_empty()) {
        return altered("has matchConditions, which can exempt requests");
    }
    let constraints = spec.match_constraints.as_ref();
    let rules_cover = constraints.and_then(|m| m.resource_rules.as_ref()).is_some_and(|rules| rules.iter().any(covers_tenantusers));
    let excludes = constraints.and_then(|m| m.exclude_resource_rules.as_ref()).is_some_and(|rules| !rules.is_empty());
    let narrowed = constraints.is_some_and(|m| !selects_everything(&m.namespace_selector) || !selects_everything(&m.object_selector));
    if !rules_cover || excludes || narrowed {
        return altered("does not select every create and update of TenantUsers");
    }
    let present: Vec<String> = spec.validations.iter().flatten().map(|v| normalised(&v.expression)).collect();
    if let Some(missing) = expected_validations().iter().find(|e| !present.contains(&normalised(e))) {
        return altered(&format!("lacks the validation `{missing}`"));
    }

    let how = "apply deploy/admission/tenantuser-self-service-binding.yaml (Helm: selfServicePolicy.enabled=true) unchanged";
    let binding = binding.ok_or_else(|| format!("the ValidatingAdmissionPolicyBinding {BINDING} is not installed; {how}"))?;
    let altered = |what: &str| Err(format!("the ValidatingAdmissionPolicyBinding {BINDING} {what}; {how}"));
    if binding.metadata.deletion_timestamp.is_some() {
        return altered("is being deleted");
    }
    let spec = binding.spec.as_ref().ok_or_else(|| format!("the ValidatingAdmissionPolicyBinding {BINDING} has no spec; {how}"))?;
    if spec.policy_name.as_deref() != Some(POLICY) {
        return altered(&format!("does not bind {POLICY}"));
    }
    if !spec.validation_actions.iter().flatten().any(|a| a == "Deny") {
        return altered("does not deny (validationActions lacks Deny)");
    }
    if let Some(resources) = &spec.match_resources {
        let rules_cover = resources.resource_rules.as_ref().is_none_or(|rules| rules.is_empty() || rules.iter().any(covers_tenantusers));
        let excludes = resources.exclude_resource_rules.as_ref().is_some_and(|rules| !rules.is_empty());
        if !rules_cover || excludes || !selects_everything(&resources.namespace_selector) || !selects_everything(&resources.object_selector)
        {
            return altered("narrows the requests the policy applies to (matchResources)");
        }
    }
    Ok(())
}

/// One change seen by the two watches.
enum Seen {
    Policy(watcher::Event<ValidatingAdmissionPolicy>),
    Binding(watcher::Event<ValidatingAdmissionPolicyBinding>),
    PolicyError(watcher::Error),
    BindingError(watcher::Error),
}

/// The latest object of one watch, and whether its initial list is complete.
struct Latest<K> {
    object: Option<K>,
    listing: Option<K>,
    listed: bool,
}

impl<K> Default for Latest<K> {
    fn default() -> Self {
        Self { object: None, listing: None, listed: false }
    }
}

impl<K> Latest<K> {
    fn observe(&mut self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Init => self.listing = None,
            watcher::Event::InitApply(object) => self.listing = Some(object),
            watcher::Event::InitDone => {
                self.object = self.listing.take();
                self.listed = true;
            }
            watcher::Event::Apply(object) => self.object = Some(object),
            watcher::Event::Delete(_) => self.object = None,
        }
    }
}

/// Watch the policy and its binding by name and publish the verdict (and the metric) whenever
/// it changes. Until both have been listed the verdict is [`SelfService::Unknown`]; if a watch
/// cannot list at all (no permission, API not served), self-edit is withheld with the error.
pub async fn watch_policy(client: Client, verdict: watch::Sender<SelfService>, metrics: Metrics) {
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let policies = watcher(Api::<ValidatingAdmissionPolicy>::all(client.clone()), by_name(POLICY))
        .default_backoff()
        .map(|event| event.map_or_else(Seen::PolicyError, Seen::Policy));
    let bindings = watcher(Api::<ValidatingAdmissionPolicyBinding>::all(client), by_name(BINDING))
        .default_backoff()
        .map(|event| event.map_or_else(Seen::BindingError, Seen::Binding));
    let mut seen = futures::stream::select(policies.boxed(), bindings.boxed());
    let mut policy = Latest::default();
    let mut binding = Latest::default();
    let publish = |next: SelfService| {
        metrics.set_self_service_verified(next.allows_self_edit());
        verdict.send_if_modified(|current| {
            let changed = *current != next;
            if changed {
                tracing::info!(verdict = ?next, "self-service policy");
                *current = next;
            }
            changed
        });
    };
    while let Some(change) = seen.next().await {
        match change {
            Seen::Policy(event) => policy.observe(event),
            Seen::Binding(event) => binding.observe(event),
            Seen::PolicyError(error) | Seen::BindingError(error) => {
                tracing::warn!(%error, "cannot watch the self-service admission policy");
                // Known verdicts stay (the watch lists again); an unknown one fails closed, so
                // that users are not held up.
                if *verdict.borrow() == SelfService::Unknown {
                    publish(SelfService::Withheld(format!("the operator cannot read the self-service admission policy {POLICY}: {error}")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        if policy.listed && binding.listed {
            publish(match verify(policy.object.as_ref(), binding.object.as_ref()) {
                Ok(()) => SelfService::Verified,
                Err(why) => SelfService::Withheld(why),
            });
        }
    }
    // The watches retry for ever; should they ever end, the last verdict stands.
    futures::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn shipped() -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
        let policy = include_str!("../../../deploy/admission/tenantuser-self-service-policy.yaml");
        let binding = include_str!("../../../deploy/admission/tenantuser-self-service-binding.yaml");
        (
            ValidatingAdmissionPolicy::deserialize(serde_yaml::Deserializer::from_str(policy)).expect("policy"),
            ValidatingAdmissionPolicyBinding::deserialize(serde_yaml::Deserializer::from_str(binding)).expect("binding"),
        )
    }

    #[test]
    fn the_shipped_policy_and_binding_are_verified() {
        let (policy, binding) = shipped();
        assert_eq!(verify(Some(&policy), Some(&binding)), Ok(()));
        let shipped: Vec<String> =
            policy.spec.iter().flat_map(|s| s.validations.iter().flatten()).map(|v| normalised(&v.expression)).collect();
        assert_eq!(shipped, expected_validations().iter().map(|e| normalised(e)).collect::<Vec<_>>(), "deploy/ and the code agree");
    }

    #[test]
    fn every_weakening_withholds_self_edit() {
        let (policy, binding) = shipped();
        let withheld = |p: Option<&ValidatingAdmissionPolicy>, b: Option<&ValidatingAdmissionPolicyBinding>, says: &str| {
            let why = verify(p, b).expect_err(says);
            assert!(why.contains(says), "{why}");
        };
        withheld(None, Some(&binding), "is not installed");
        withheld(Some(&policy), None, "Binding tenantuser-self-service.tenancy.platform.dev is not installed");

        let mut ignoring = policy.clone();
        ignoring.spec.as_mut().unwrap().failure_policy = Some("Ignore".into());
        withheld(Some(&ignoring), Some(&binding), "failurePolicy");
        let mut weakened = policy.clone();
        weakened.spec.as_mut().unwrap().validations.as_mut().unwrap()[2].expression = "true".into();
        withheld(Some(&weakened), Some(&binding), "lacks the validation");
        let mut exempting = policy.clone();
        exempting.spec.as_mut().unwrap().match_conditions =
            Some(vec![serde_json::from_value(serde_json::json!({"name": "x", "expression": "false"})).unwrap()]);
        withheld(Some(&exempting), Some(&binding), "matchConditions");
        let mut updates_only = policy.clone();
        updates_only.spec.as_mut().unwrap().match_constraints.as_mut().unwrap().resource_rules.as_mut().unwrap()[0].operations =
            Some(vec!["CREATE".into()]);
        withheld(Some(&updates_only), Some(&binding), "does not select");

        let mut warn_only = binding.clone();
        warn_only.spec.as_mut().unwrap().validation_actions = Some(vec!["Warn".into()]);
        withheld(Some(&policy), Some(&warn_only), "lacks Deny");
        let mut narrowed = binding.clone();
        narrowed.spec.as_mut().unwrap().match_resources =
            Some(serde_json::from_value(serde_json::json!({"namespaceSelector": {"matchLabels": {"x": "y"}}})).unwrap());
        withheld(Some(&policy), Some(&narrowed), "narrows");
        let mut other = binding.clone();
        other.spec.as_mut().unwrap().policy_name = Some("something-else".into());
        withheld(Some(&policy), Some(&other), "does not bind");
    }
}

//! Step 1 for a TenantUser: its tenant exists and is not going away, and no older user of the
//! tenant has its email or username. Otherwise the user is refused and gets no bindings.

use kube::ResourceExt;

use crate::{
    config::Config,
    desired::user::UserPlan,
    types::{Problem, Reason, Tenant, TenantUser},
};

#[derive(Debug)]
pub struct ValidatedUser {
    pub tenant: Tenant,
    pub plan: UserPlan,
}

/// `tenant`: the user's tenant if it exists; `others`: the other users of the cluster.
pub fn validate(user: &TenantUser, tenant: Option<Tenant>, others: &[TenantUser], config: &Config) -> Result<ValidatedUser, Problem> {
    let slug = &user.spec.tenant;
    let tenant = tenant.ok_or_else(|| {
        Problem::new(Reason::TenantNotFound, format!("tenant {slug} does not exist (yet); access is granted when it appears"))
    })?;
    if tenant.metadata.deletion_timestamp.is_some() {
        return Err(Problem::new(Reason::TenantTerminating, format!("tenant {slug} is being deleted")));
    }
    if let Some(problem) = duplicate_of(user, others) {
        return Err(problem);
    }
    let plan = UserPlan::build(user, &tenant, config)
        .map_err(|error| Problem::new(Reason::InvalidSpec, format!("the user's RoleBindings cannot be built: {error}")))?;
    Ok(ValidatedUser { tenant, plan })
}

/// Why a user is refused, if another user of the same tenant already has its email or name.
/// The older user (creation time, then name) keeps access.
fn duplicate_of(user: &TenantUser, others: &[TenantUser]) -> Option<Problem> {
    let key = |u: &TenantUser| (u.metadata.creation_timestamp.clone().map(|t| t.0), u.name_any());
    let me = key(user);
    let email = user.spec.email.to_lowercase();
    let mut older: Vec<&TenantUser> = others
        .iter()
        .filter(|other| {
            other.spec.tenant == user.spec.tenant && other.name_any() != user.name_any() && other.metadata.deletion_timestamp.is_none()
        })
        .filter(|other| key(other) < me)
        .collect();
    older.sort_by_key(|u| key(u));
    let tenant = &user.spec.tenant;
    if let Some(other) = older.iter().find(|o| o.spec.email.to_lowercase() == email) {
        return Some(Problem::new(
            Reason::DuplicateEmail,
            format!("email {} is already used by TenantUser {} of tenant {tenant}", user.spec.email, other.name_any()),
        ));
    }
    if let Some(other) = older.iter().find(|o| o.spec.username == user.spec.username) {
        return Some(Problem::new(
            Reason::DuplicateUsername,
            format!("username {} is already used by TenantUser {} of tenant {tenant}", user.spec.username, other.name_any()),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::types::{TenantSpec, TenantUserSpec};

    fn config() -> Config {
        crate::desired::tenant::tests::example_config()
    }

    fn tenant() -> Tenant {
        let spec: TenantSpec =
            serde_json::from_value(serde_json::json!({"displayName": "Acme", "cluster": "uk", "environments": ["dev"]})).unwrap();
        Tenant::new("acme", spec)
    }

    fn user(name: &str, email: &str, username: &str, created: i64) -> TenantUser {
        let spec: TenantUserSpec = serde_json::from_value(serde_json::json!({
            "tenant": "acme", "email": email, "username": username, "firstName": "A", "lastName": "B", "roles": ["Designer"]
        }))
        .unwrap();
        let mut user = TenantUser::new(name, spec);
        user.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        user
    }

    #[test]
    fn a_missing_or_terminating_tenant_refuses() {
        let u = user("acme-a", "a@acme.example", "a", 1);
        assert_eq!(validate(&u, None, &[], &config()).unwrap_err().reason, Reason::TenantNotFound);
        let mut going = tenant();
        going.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        assert_eq!(validate(&u, Some(going), &[], &config()).unwrap_err().reason, Reason::TenantTerminating);
    }

    #[test]
    fn the_older_user_keeps_a_duplicate_email_or_username() {
        let older = user("acme-a", "Jane@acme.example", "jane", 1);
        let newer = user("acme-b", "jane@ACME.example", "jane2", 2);
        let problem = validate(&newer, Some(tenant()), &[older.clone(), newer.clone()], &config()).unwrap_err();
        assert_eq!(problem.reason, Reason::DuplicateEmail);
        assert!(problem.message.contains("acme-a"), "{}", problem.message);
        assert!(validate(&older, Some(tenant()), &[older.clone(), newer.clone()], &config()).is_ok());
        let same_name = user("acme-c", "c@acme.example", "jane", 3);
        assert_eq!(
            validate(&same_name, Some(tenant()), &[older, same_name.clone()], &config()).unwrap_err().reason,
            Reason::DuplicateUsername
        );
    }
}

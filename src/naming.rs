//! Names, labels and hostnames: the conventions by which children are found again.
//!
//! Children are linked to their Tenant by these labels, never by owner references on data
//! holders, so a re-created Tenant with the same slug adopts what it finds (SPEC §3).

use crate::{config::HostnameTemplates, types::Environment};

pub const FIELD_MANAGER: &str = "tenant-operator";
pub const FINALIZER: &str = "tenancy.platform.dev/cleanup";

pub const LABEL_TENANT: &str = "tenancy.platform.dev/tenant";
pub const LABEL_ENVIRONMENT: &str = "tenancy.platform.dev/environment";
/// The TenantUser a RoleBinding is for; a label value holds at most 63 characters, so longer
/// names are shortened (see [`user_label_value`]) and [`ANNOTATION_USER`] holds the full name.
pub const LABEL_USER: &str = "tenancy.platform.dev/user";
pub const ANNOTATION_USER: &str = "tenancy.platform.dev/user-name";
/// ClusterRoles labelled `tenancy.platform.dev/assignable=true` may be named in a TenantUser's
/// `customRoles`.
pub const LABEL_ASSIGNABLE_TRUE: &str = "tenancy.platform.dev/assignable=true";
pub const LABEL_RETAINED: &str = "tenancy.platform.dev/retained";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "tenant-operator";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Hash of the desired object last applied; lets the operator notice a field it stopped
/// setting, which a "desired ⊆ observed" comparison alone cannot see.
pub const ANNOTATION_APPLIED_HASH: &str = "tenancy.platform.dev/applied-hash";
/// UID of the Tenant that last applied an object: a re-created Tenant (new UID) sees what it
/// adopts from its predecessor.
pub const ANNOTATION_TENANT_UID: &str = "tenancy.platform.dev/tenant-uid";
/// The database provider an environment's credentials Secret was created for: the pin that
/// refuses a later provider change.
pub const ANNOTATION_DATABASE_PROVIDER: &str = "tenancy.platform.dev/database-provider";
/// UID of the Tenant whose retained data a re-created Tenant adopted.
pub const ANNOTATION_ADOPTED_FROM: &str = "tenancy.platform.dev/adopted-from-uid";

/// On environment namespaces: the Service types tenants may create, joined by `.` (read by the
/// admission policy `tenancy-service-types`).
pub const LABEL_SERVICE_TYPES: &str = "tenancy.platform.dev/service-types";
/// On environment namespaces, `Always` when containers must pull always (read by the
/// admission policy `tenancy-image-pull-policy`).
pub const LABEL_IMAGE_PULL_POLICY: &str = "tenancy.platform.dev/image-pull-policy";

pub const TENANT_CONFIG_MAP: &str = "tenant-config";
pub const NETWORK_POLICY: &str = "tenant-isolation";
pub const RESOURCE_QUOTA: &str = "tenant-quota";
pub const LIMIT_RANGE: &str = "tenant-defaults";

/// Namespace of one environment of a tenant.
pub fn namespace_name(slug: &str, env: Environment) -> String {
    format!("{slug}-{env}")
}

/// StatefulSet, Service and CloudNativePG Cluster of a tenant's database in each namespace.
pub fn database_name(slug: &str) -> String {
    format!("{slug}-db")
}

pub fn database_secret_name(slug: &str) -> String {
    format!("{slug}-db-credentials")
}

/// PostgreSQL database of one environment: `<slug>_<env>` (`-` is not usable unquoted in SQL).
pub fn sql_database_name(slug: &str, env: Environment) -> String {
    format!("{}_{env}", slug.replace('-', "_"))
}

/// PostgreSQL login role used by the tenant's applications.
pub fn sql_user_name(slug: &str) -> String {
    slug.replace('-', "_")
}

/// The longest name of a Role or RoleBinding (a path segment name of at most 253 characters).
const MAX_OBJECT_NAME: usize = 253;

/// RoleBinding of a user's system role (in each environment namespace, and to
/// `tenancy:user-admin` in the account namespace for Account Admins).
pub fn user_binding_name(username: &str) -> String {
    shortened_object_name(&format!("tenantuser-{username}"))
}

/// RoleBinding of one custom role of a user. `:` cannot occur in a username, so these names
/// never collide with another user's bindings.
pub fn user_custom_binding_name(username: &str, cluster_role: &str) -> String {
    shortened_object_name(&format!("tenantuser-{username}:{cluster_role}"))
}

/// Role (and its RoleBinding) in the account namespace that lets a user read and edit their
/// own TenantUser. Custom-role bindings live in environment namespaces only, so a ClusterRole
/// named `self` cannot collide with it.
pub fn user_self_service_name(username: &str) -> String {
    shortened_object_name(&format!("tenantuser-{username}:self"))
}

/// The account namespace of a tenant, home of its TenantUsers. It cannot be another tenant's
/// environment namespace: those end in `-dev`, `-staging` or `-prod`.
pub fn account_namespace_name(slug: &str) -> String {
    format!("{slug}-{ACCOUNT_SUFFIX}")
}

const ACCOUNT_SUFFIX: &str = "account";

/// The slug whose account namespace `namespace` would be, by its name alone (whether it is
/// that tenant's is for the caller to check).
pub fn slug_of_account_namespace(namespace: &str) -> Option<&str> {
    namespace.strip_suffix(ACCOUNT_SUFFIX)?.strip_suffix('-').filter(|slug| !slug.is_empty())
}

/// A TenantUser name as a label value: itself when it fits 63 characters, else its first 30
/// characters, `-` and 128 bits of its SHA-256 (names are DNS subdomains: up to 253
/// characters). The label selects; the user's identity is the annotation [`ANNOTATION_USER`].
pub fn user_label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let prefix: String = name.chars().take(30).collect();
    format!("{}-{}", prefix.trim_end_matches(['-', '.', '_']), digest_hex(name))
}

/// Separates a shortened name from the hash of the whole: usernames and custom-role names
/// never contain it, so no full name can equal a shortened one (a username chosen to look
/// like another user's shortened name stays distinct from it).
const SHORTENED_MARK: char = '~';

/// `name` itself when it fits a Role or RoleBinding name, else a prefix, [`SHORTENED_MARK`]
/// and 128 bits of the SHA-256 of the whole name: distinct long names stay distinct beyond
/// anyone's reach, and names that fit (every user's before long names were hashed this way)
/// do not change.
fn shortened_object_name(name: &str) -> String {
    if name.len() <= MAX_OBJECT_NAME {
        return name.to_string();
    }
    let hash = digest_hex(name);
    let room = MAX_OBJECT_NAME - hash.len() - SHORTENED_MARK.len_utf8();
    let prefix: String = name.chars().take(room).collect();
    format!("{prefix}{SHORTENED_MARK}{hash}")
}

/// The first 128 bits of the SHA-256 of `text`, in hex (32 characters).
fn digest_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// Hostname of an application of a tenant in one environment.
pub fn hostname(templates: &HostnameTemplates, slug: &str, env: Environment, app: &str, domain: &str) -> String {
    templates
        .for_environment(env)
        .replace("{tenant}", slug)
        .replace("{env}", env.as_str())
        .replace("{app}", app)
        .replace("{domain}", domain)
}

/// Environment of a namespace name, if it is one of the tenant's environment namespaces.
pub fn environment_of_namespace(slug: &str, namespace: &str) -> Option<Environment> {
    namespace.strip_prefix(slug)?.strip_prefix('-').and_then(Environment::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_label_values_fit_63_characters_and_stay_distinct() {
        assert_eq!(user_label_value("acme-jdoe"), "acme-jdoe");
        let long_a = format!("acme-{}.example.com", "a".repeat(200));
        let long_b = format!("acme-{}.example.org", "a".repeat(200));
        let (a, b) = (user_label_value(&long_a), user_label_value(&long_b));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.ends_with(|c: char| c.is_ascii_alphanumeric()));
        let dotted = format!("{}.{}", "b".repeat(51), "c".repeat(100));
        let value = user_label_value(&dotted);
        assert!(!value.contains(".-") && value.len() <= 63, "{value}");
    }

    #[test]
    fn namespaces_are_slug_dash_environment() {
        assert_eq!(namespace_name("acme", Environment::Dev), "acme-dev");
        assert_eq!(namespace_name("acme", Environment::Staging), "acme-staging");
        assert_eq!(namespace_name("acme", Environment::Prod), "acme-prod");
    }

    #[test]
    fn namespace_environment_round_trips() {
        for env in Environment::ALL {
            assert_eq!(environment_of_namespace("acme-corp", &namespace_name("acme-corp", env)), Some(env));
        }
        assert_eq!(environment_of_namespace("acme", "acme-qa"), None);
        assert_eq!(environment_of_namespace("acme", "acmeprod"), None);
        assert_eq!(environment_of_namespace("acme", "other-prod"), None);
    }

    #[test]
    fn hostnames_follow_the_default_templates() {
        let t = HostnameTemplates::default();
        assert_eq!(hostname(&t, "acme", Environment::Prod, "xconsole", "uk.cloud.example.com"), "acme.xconsole.uk.cloud.example.com");
        assert_eq!(hostname(&t, "acme", Environment::Dev, "xconsole", "uk.cloud.example.com"), "acme-dev.xconsole.uk.cloud.example.com");
        assert_eq!(
            hostname(&t, "acme", Environment::Staging, "u-assist", "uk.cloud.example.com"),
            "acme-staging.u-assist.uk.cloud.example.com"
        );
    }

    #[test]
    fn changing_the_cluster_domain_moves_every_hostname() {
        let t = HostnameTemplates::default();
        for env in Environment::ALL {
            let uk = hostname(&t, "acme", env, "xconsole", "uk.cloud.example.com");
            let us = hostname(&t, "acme", env, "xconsole", "us.cloud.example.com");
            assert_ne!(uk, us);
            assert!(us.ends_with(".us.cloud.example.com"));
        }
    }

    #[test]
    fn custom_templates_are_honoured() {
        let t = HostnameTemplates { prod: "{app}-{tenant}.{domain}".into(), non_prod: "{app}-{tenant}-{env}.{domain}".into() };
        assert_eq!(hostname(&t, "acme", Environment::Prod, "xconsole", "example.com"), "xconsole-acme.example.com");
        assert_eq!(hostname(&t, "acme", Environment::Dev, "xconsole", "example.com"), "xconsole-acme-dev.example.com");
    }

    #[test]
    fn sql_names_replace_dashes() {
        assert_eq!(sql_database_name("acme-corp", Environment::Prod), "acme_corp_prod");
        assert_eq!(sql_user_name("acme-corp"), "acme_corp");
    }

    #[test]
    fn user_binding_names_cannot_collide_across_users() {
        assert_eq!(user_binding_name("jdoe"), "tenantuser-jdoe");
        assert_ne!(user_custom_binding_name("a", "b"), user_binding_name("a-b"));
        assert_eq!(user_custom_binding_name("jdoe", "flow-billing-editor"), "tenantuser-jdoe:flow-billing-editor");
        assert_eq!(user_self_service_name("jane@acme.example"), "tenantuser-jane@acme.example:self");
    }

    /// Issue 20 §5: a 242-character username equal to another user's name shortened by the
    /// old 40-bit scheme, and usernames chosen to look like any shortened name, stay distinct.
    #[test]
    fn a_username_cannot_equal_another_users_shortened_name() {
        let long = "a".repeat(250);
        let lookalike = format!("{}-20c089d837", "a".repeat(231));
        let shortened = user_binding_name(&long);
        assert!(shortened.len() <= 253 && shortened.contains(SHORTENED_MARK), "{shortened}");
        assert_ne!(shortened, user_binding_name(&lookalike));
        assert_eq!(user_binding_name(&lookalike), format!("tenantuser-{lookalike}"), "a name that fits is kept");
        // Whatever a username looks like, it cannot produce the mark.
        let pattern = regex_free_username_check(&shortened["tenantuser-".len()..]);
        assert!(!pattern, "a shortened name is never a valid username");
        assert_eq!(digest_hex("x").len(), 32, "128 bits");
    }

    /// The characters a username may hold (the CRD's pattern): letters, digits, `.`, `_`,
    /// `+`, `-`, `@`.
    fn regex_free_username_check(candidate: &str) -> bool {
        candidate.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._+-@".contains(c))
    }

    #[test]
    fn names_from_long_usernames_fit_and_stay_distinct() {
        let a = format!("{}@acme.example", "a".repeat(240));
        let b = format!("{}@acme.exampel", "a".repeat(240));
        for name in [user_binding_name(&a), user_self_service_name(&a), user_custom_binding_name(&a, "flow-billing-editor")] {
            assert!(name.len() <= 253, "{name}");
        }
        assert_ne!(user_binding_name(&a), user_binding_name(&b));
        assert_ne!(user_binding_name(&a), user_self_service_name(&a));
    }

    #[test]
    fn account_namespaces_name_their_slug() {
        assert_eq!(account_namespace_name("acme"), "acme-account");
        assert_eq!(slug_of_account_namespace("acme-account"), Some("acme"));
        assert_eq!(slug_of_account_namespace("acme-corp-account"), Some("acme-corp"));
        for not_an_account in ["acme-dev", "account", "-account", "acmeaccount"] {
            assert_eq!(slug_of_account_namespace(not_an_account), None, "{not_an_account}");
        }
        for env in Environment::ALL {
            assert_ne!(account_namespace_name("acme"), namespace_name("acme", env));
        }
    }
}

//! The vocabulary of status: condition types, the reasons documented for them, and a
//! [`Problem`] (a reason with a message a person can act on).
//!
//! Reasons are an enum so that a decision (is this stalled? is this a database problem?) is
//! made on a variant, never by comparing or parsing strings.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionType {
    /// Everything the resource asks for exists and works.
    Ready,
    /// The operator is still working towards the spec (kstatus).
    Reconciling,
    /// The operator cannot make progress without a change by a person (kstatus).
    Stalled,
    NamespacesReady,
    IngressReady,
    DatabaseReady,
    /// A TenantUser: whether the user may edit their own TenantUser.
    SelfService,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Reconciling => "Reconciling",
            ConditionType::Stalled => "Stalled",
            ConditionType::NamespacesReady => "NamespacesReady",
            ConditionType::IngressReady => "IngressReady",
            ConditionType::DatabaseReady => "DatabaseReady",
            ConditionType::SelfService => "SelfService",
        }
    }
}

impl AsRef<str> for ConditionType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident ),* $(,)?) => {
        /// Every reason the operator writes into a condition or an Event. `docs/` documents
        /// each one (what it means, what to do).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( Reason::$variant => stringify!($variant), )*
                }
            }
        }
    };
}

reasons! {
    // Progress and success.
    /// All environments, endpoints and databases are ready.
    Ready,
    /// The environment's objects are applied.
    Applied,
    /// Work is in progress (Reconciling).
    Provisioning,
    /// The database provider is `none`.
    NoDatabase,
    /// A user's RoleBindings are in place.
    Bound,
    /// `spec.suspend` is true.
    Suspended,
    /// The resource is being deleted.
    Terminating,
    /// The last reconcile failed; it is retried with back-off.
    ReconcileFailed,
    /// Waiting for the environment namespaces before routing.
    NamespacesNotReady,
    /// An Ingress has no address yet: the ingress controller has not admitted it.
    WaitingForAddress,
    /// An HTTPRoute is not accepted yet: the gateway controller has not set `Accepted=True`
    /// and `ResolvedRefs=True` for the region's Gateway at the route's generation.
    WaitingForRoute,
    /// A namespace of the tenant is being deleted; it is re-created once gone.
    NamespaceTerminating,
    /// The cluster's quota controller has not counted the account namespace's quota yet: until
    /// it has, the API server refuses the TenantUsers it counts ("status unknown for quota").
    QuotaNotCounted,
    /// The database exists but does not accept connections yet.
    DatabaseNotReady,

    // Refusals that need a person (Stalled).
    /// `spec.cluster` is not in the operator configuration.
    UnknownCluster,
    /// An application is not in the operator configuration's catalogue.
    UnknownApplication,
    /// The `external` provider is chosen but not configured.
    DatabaseProviderNotConfigured,
    /// The resource cannot be read (no name).
    InvalidSpec,
    /// The API server refused an object.
    ApplyFailed,
    /// The CloudNativePG operator is not installed.
    CloudNativePgNotInstalled,
    /// The region routes through a Gateway, but the Gateway API CRDs are not installed.
    GatewayApiNotInstalled,
    /// The Gateway the region routes through does not exist.
    GatewayNotFound,
    /// An environment namespace exists and was not created by the operator for this tenant.
    NamespaceConflict,
    /// The credentials Secret exists and was not created by the operator.
    SecretConflict,
    /// An object the operator wants to create exists and is someone else's.
    ObjectConflict,
    /// An external database or role of that name exists and is not the operator's.
    DatabaseConflict,
    /// An older Tenant already routes one of this Tenant's hostnames.
    HostnameConflict,
    /// The database provider of an environment changed after its database was created.
    ProviderChangeRefused,
    /// Namespaces, credentials or external databases of the tenant's name were left by an
    /// earlier Tenant (another UID), and `spec.adoptRetainedFrom` does not name it.
    RetainedDataFromAnotherTenant,

    // External database provider.
    InvalidAdminSecret,
    InvalidDatabaseName,
    InvalidDatabasePassword,
    ServerUnreachable,
    TlsHandshakeFailed,
    AdminAuthenticationFailed,
    TenantLoginFailed,
    InsufficientPrivilege,
    DatabaseError,

    // TenantUser.
    /// The user is not in its tenant's account namespace `<slug>-account` (or that namespace
    /// is not the operator's).
    NotInAccountNamespace,
    /// The user's tenant does not exist (yet).
    TenantNotFound,
    /// The user's tenant is being deleted.
    TenantTerminating,
    /// Another, older user of the tenant has this email.
    DuplicateEmail,
    /// Another, older user of the tenant has this username.
    DuplicateUsername,
    /// Some environment namespaces of the tenant do not exist yet.
    WaitingForNamespaces,
    /// Supervisor and Agent are only bound in prod, and the tenant has none.
    RoleRequiresProd,
    /// The API server refused a RoleBinding to a custom role (the operator may not bind it).
    CustomRoleRefused,
    /// A custom role does not exist.
    CustomRoleNotFound,
    /// The self-service admission policy and its binding are installed as shipped: users may
    /// edit their own names and details (condition `SelfService`).
    SelfServiceVerified,
    /// The self-service admission policy or its binding is missing or altered: users may only
    /// read their own TenantUser (condition `SelfService`, message says what is wrong).
    SelfServiceUnavailable,
    /// A Role or RoleBinding the user needs is taken by another TenantUser (or is not the
    /// operator's); it is left alone.
    BindingConflict,
    /// The user was given access by an earlier Tenant of the same name (another UID), whose
    /// data the current Tenant has not adopted.
    UserOfAnotherTenant,

    // Events.
    Created,
    Deleted,
    Retained,
    Adopted,
    /// A database password was rotated on request (Event).
    CredentialsRotated,
}

impl Reason {
    /// Whether a resource held up for this reason waits for a person (kstatus `Stalled`)
    /// rather than for time (a database starting, a namespace going away).
    pub fn needs_a_person(self) -> bool {
        matches!(
            self,
            Reason::UnknownCluster
                | Reason::UnknownApplication
                | Reason::DatabaseProviderNotConfigured
                | Reason::InvalidSpec
                | Reason::ApplyFailed
                | Reason::CloudNativePgNotInstalled
                | Reason::GatewayApiNotInstalled
                | Reason::GatewayNotFound
                | Reason::NamespaceConflict
                | Reason::SecretConflict
                | Reason::ObjectConflict
                | Reason::DatabaseConflict
                | Reason::HostnameConflict
                | Reason::ProviderChangeRefused
                | Reason::RetainedDataFromAnotherTenant
                | Reason::UserOfAnotherTenant
                | Reason::InvalidAdminSecret
                | Reason::InvalidDatabaseName
                | Reason::InvalidDatabasePassword
                | Reason::TlsHandshakeFailed
                | Reason::AdminAuthenticationFailed
                | Reason::InsufficientPrivilege
                | Reason::NotInAccountNamespace
                | Reason::DuplicateEmail
                | Reason::DuplicateUsername
                | Reason::RoleRequiresProd
                | Reason::CustomRoleRefused
                | Reason::CustomRoleNotFound
                | Reason::BindingConflict
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that keeps a resource from being ready, as it is reported in a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    pub message: String,
}

impl Problem {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// A condition with the transition time `now`; [`super::set_condition`] keeps the previous
/// transition time when the status did not change.
pub fn condition(
    type_: ConditionType,
    status: bool,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.as_str().to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.as_str().to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/troubleshooting.md documents every reason, and says Stalled exactly for those that
    /// need a person.
    #[test]
    fn every_reason_is_documented_with_the_right_kind() {
        let doc = include_str!("../../docs/troubleshooting.md");
        for reason in Reason::ALL {
            let name = format!("`{}`", reason.as_str());
            let row = doc.lines().find(|line| line.starts_with('|') && line.split('|').nth(1).is_some_and(|cell| cell.contains(&name)));
            let Some(row) = row else { panic!("{name} is not in docs/troubleshooting.md") };
            let kind = row.split('|').nth(3).map(str::trim).unwrap_or_default();
            match kind {
                "Stalled" => assert!(reason.needs_a_person(), "{name} is documented as Stalled"),
                "Reconciling" => assert!(!reason.needs_a_person(), "{name} is documented as Reconciling"),
                _ => {}
            }
        }
    }

    #[test]
    fn reasons_are_camel_case_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            let text = reason.as_str();
            assert!(text.starts_with(|c: char| c.is_ascii_uppercase()) && text.chars().all(|c| c.is_ascii_alphanumeric()), "{text}");
            assert!(seen.insert(text), "{text} twice");
        }
    }
}

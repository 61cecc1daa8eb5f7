use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A person with access to one tenant's environments: the highest system role decides the
/// ClusterRole bound in each environment namespace; custom roles add to it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tenancy.platform.dev",
    version = "v1alpha1",
    kind = "TenantUser",
    namespaced,
    plural = "tenantusers",
    singular = "tenantuser",
    shortname = "tu",
    category = "tenancy",
    status = "TenantUserStatus",
    doc = "A user of a tenant, living in the tenant's account namespace `<slug>-account`: roles become RoleBindings in the tenant's environment namespaces, and Account Admins manage the account's users.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".status.tenant"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Effective Role", type_ = "string", json_path = ".status.effectiveRole"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1, description = "Reason of the Ready condition"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1, description = "Message of the Ready condition"),
    annotation("helm.sh/resource-policy", "keep"),
    annotation("argocd.argoproj.io/sync-options", "Prune=false,Delete=false"),
    annotation("kustomize.toolkit.fluxcd.io/prune", "disabled"),
    validation = Rule::new("self.metadata.name.size() <= 253").message("metadata.name must be at most 253 characters")
)]
#[x_kube(
    validation = Rule::new("(has(self.roles) && self.roles.size() > 0) || (has(self.customRoles) && self.customRoles.size() > 0)").message("a user needs at least one role or custom role"),
    validation = Rule::new("!has(self.receiveEmailNotifications) || !self.receiveEmailNotifications || (has(self.roles) && 'AccountAdmin' in self.roles)").message("receiveEmailNotifications: true is for Account Admins: add the AccountAdmin role or leave it false").field_path(".receiveEmailNotifications")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantUserSpec {
    /// Sign-in email, unique within the tenant (compared case-insensitively); with the
    /// configured prefix it is the RBAC subject (`User`) of the user's RoleBindings. A second
    /// TenantUser with the same email gets `Ready=False`, reason `DuplicateEmail`. It is the
    /// user's identity and cannot be changed: create a new TenantUser instead.
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.email is the user's identity in RBAC and cannot be changed: create a new TenantUser instead"))]
    pub email: String,

    /// User name, unique within the tenant (a second TenantUser with the same one gets
    /// `Ready=False`, reason `DuplicateUsername`): a lower-case email address or a DNS-style
    /// name (`a-z`, `0-9`, `-`, `.`), at most 253 characters. Names the RoleBindings
    /// `tenantuser-<username>`. Users cannot change their own.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?|[a-z0-9._+-]+@[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")
    )]
    pub username: String,

    /// The user's first name, 1 to 64 characters.
    #[schemars(length(min = 1, max = 64))]
    pub first_name: String,

    /// The user's last name, 1 to 64 characters.
    #[schemars(length(min = 1, max = 64))]
    pub last_name: String,

    /// System roles, highest first: `AccountAdmin`, `FlowAdmin`, `Designer`, `Analyst`,
    /// `Supervisor`, `Agent`. The highest one held decides the ClusterRole bound in each
    /// environment. At least one role or custom role is required. A set: the API server
    /// rejects a repeated item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6), extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<SystemRole>,

    /// Names of extra ClusterRoles bound in every environment namespace of the tenant, in
    /// addition to the system role's. The operator must be allowed to bind them (see the
    /// operations guide, "Custom roles"). A set: the API server rejects a repeated item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 200), regex(pattern = r"^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$")))]
    pub custom_roles: Vec<String>,

    /// Optional details shown to people: alias, title, department, division, phone, extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<UserDetails>,

    /// Whether the user receives the platform's email notifications; only Account Admins may
    /// (the API server refuses `true` without the `AccountAdmin` role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_email_notifications: Option<bool>,
}

/// A system role of the platform, highest first: `AccountAdmin`, `FlowAdmin`, `Designer`,
/// `Analyst`, `Supervisor`, `Agent`. A user holding several gets the access of the highest.
// Declared highest first: the derived order makes `AccountAdmin < FlowAdmin < ...`, so the
// minimum of a user's roles is the effective one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
pub enum SystemRole {
    /// Manages the account: admin in dev and staging, viewer in prod, and manages the
    /// account's TenantUsers in `<slug>-account`.
    AccountAdmin,
    /// Administers flows: editor in dev and staging, viewer in prod.
    FlowAdmin,
    /// Designs flows: editor in dev and staging, viewer in prod.
    Designer,
    /// Analyses and configures in dev: editor in dev, viewer in staging and prod.
    Analyst,
    /// Supervises agents: bound in prod only.
    Supervisor,
    /// Handles customer contacts: bound in prod only.
    Agent,
}

impl SystemRole {
    pub const ALL: [SystemRole; 6] = [
        SystemRole::AccountAdmin,
        SystemRole::FlowAdmin,
        SystemRole::Designer,
        SystemRole::Analyst,
        SystemRole::Supervisor,
        SystemRole::Agent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SystemRole::AccountAdmin => "AccountAdmin",
            SystemRole::FlowAdmin => "FlowAdmin",
            SystemRole::Designer => "Designer",
            SystemRole::Analyst => "Analyst",
            SystemRole::Supervisor => "Supervisor",
            SystemRole::Agent => "Agent",
        }
    }
}

impl fmt::Display for SystemRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Optional details of a user, shown to people; the operator does not act on them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDetails {
    /// Short name the user goes by, at most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub alias: Option<String>,
    /// Job title, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub title: Option<String>,
    /// Department, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub department: Option<String>,
    /// Division, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub division: Option<String>,
    /// Phone number: digits, spaces, parentheses and '-', optionally starting with '+'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^\+?[0-9 ()-]*$"))]
    pub phone: Option<String>,
    /// Phone extension, digits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]*$"))]
    pub extension: Option<String>,
}

/// What the operator observed when it last reconciled the TenantUser (kstatus conventions, as
/// for Tenants).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUserStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Slug of the Tenant whose account namespace holds the user (set once the namespace is
    /// found to be that Tenant's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The highest of the user's system roles, which decides the ClusterRole bound in each
    /// environment; the CRD shows the description of [`SystemRole`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_role: Option<SystemRole>,
    /// The UID of the Tenant under which the user was given access. A Tenant re-created with
    /// the same name (a new UID) binds the user again only if it adopted this Tenant's data
    /// (`spec.adoptRetainedFrom`); otherwise the user is refused (`UserOfAnotherTenant`). Only
    /// the operator writes it: status cannot be changed by the user or by Account Admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_uid: Option<String>,
    /// Namespaces in which the user's RoleBindings exist (environment namespaces and, for
    /// Account Admins, the account namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_namespaces: Vec<String>,
    /// Standard conditions, one per type: `Ready` (True when the user's RoleBindings exist in
    /// every environment namespace; False with reasons such as `TenantNotFound`,
    /// `DuplicateEmail`, `DuplicateUsername`), `Reconciling` (True while bindings are being
    /// written), `Stalled` (True when the operator cannot progress without a change by a
    /// person, e.g. a duplicate email or username) and `SelfService` (True while the user may
    /// edit their own TenantUser; False, reason `SelfServiceUnavailable`, while the
    /// self-service admission policy is not installed as shipped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

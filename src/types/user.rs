use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A person with access to one tenant's environments.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tenancy.platform.dev",
    version = "v1alpha1",
    kind = "TenantUser",
    plural = "tenantusers",
    singular = "tenantuser",
    shortname = "tu",
    category = "tenancy",
    status = "TenantUserStatus",
    doc = "A user of a tenant: roles become RoleBindings in the tenant's environment namespaces.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Effective Role", type_ = "string", json_path = ".status.effectiveRole"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 253").message("metadata.name must be at most 253 characters")
)]
#[x_kube(validation = Rule::new("(has(self.roles) && self.roles.size() > 0) || (has(self.customRoles) && self.customRoles.size() > 0)").message("a user needs at least one role or custom role"))]
#[serde(rename_all = "camelCase")]
pub struct TenantUserSpec {
    /// Slug of the Tenant this user belongs to. Immutable: create a new TenantUser to move a user.
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.tenant is immutable"))]
    pub tenant: String,

    /// Sign-in email, unique within the tenant (compared case-insensitively).
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub email: String,

    /// User name, unique within the tenant.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub username: String,

    #[schemars(length(min = 1, max = 64))]
    pub first_name: String,

    #[schemars(length(min = 1, max = 64))]
    pub last_name: String,

    /// System roles; the highest one decides the user's access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6), extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<SystemRole>,

    /// Names of extra ClusterRoles bound in every environment namespace of the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 200), regex(pattern = r"^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$")))]
    pub custom_roles: Vec<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<UserDetails>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_email_notifications: Option<bool>,
}

/// System roles of the platform, declared highest first: the derived order makes
/// `AccountAdmin < FlowAdmin < ...`, so the minimum of a user's roles is the effective one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
pub enum SystemRole {
    AccountAdmin,
    FlowAdmin,
    Designer,
    Analyst,
    Supervisor,
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

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub division: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^\+?[0-9 ()-]*$"))]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]*$"))]
    pub extension: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUserStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_role: Option<SystemRole>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

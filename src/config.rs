//! The operator configuration file (SPEC §6): cluster and application catalogues, database
//! defaults, hostname templates and the user subject prefix.
//!
//! A broken file fails at start with the file name and the path of the bad field, so a typo in a
//! ConfigMap is found before the operator touches any tenant.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::types::{DatabaseProvider, Environment};

mod database;
mod namespaces;
mod routing;

pub use database::{CloudNativePgConfig, DatabaseConfig, ExternalDatabaseConfig, SecretRef, StatefulSetDatabaseConfig};
pub use namespaces::{
    default_account_quota, default_quota, is_quantity, ContainerDefaults, NamespaceConfig, PodSecurityConfig, ACCOUNT_USERS_QUOTA,
    SERVICE_TYPES,
};
use routing::{check_gateway, default_tenant_header, is_header_name};
pub use routing::{GatewayRef, Routing};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("configuration file {file}: field `{field}`: {message}")]
    Invalid { file: String, field: String, message: String },
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Region key (a Tenant's `spec.cluster`) → how its applications are exposed.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Application key (a Tenant's `spec.applications`) → the Service that serves it.
    #[serde(default)]
    pub applications: BTreeMap<String, ApplicationConfig>,
    #[serde(default)]
    pub hostnames: HostnameTemplates,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub users: UserConfig,
    #[serde(default)]
    pub network_policy: NetworkPolicyConfig,
    #[serde(default)]
    pub namespaces: NamespaceConfig,
    /// The request header the Gateway sets to the tenant's slug on every request it routes to
    /// a tenant (`routing: gateway` regions only; an Ingress cannot set headers portably).
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// Who the operator is on the cluster: not read from the file, set at start (`run`'s
    /// flags and the downward API).
    #[serde(skip)]
    pub operator: OperatorIdentity,
}

/// The operator's ServiceAccount and the ClusterRole it binds to itself in every namespace it
/// creates (docs/operations.md#permissions): its write access to namespaced kinds, and all its
/// access to Secrets, comes from that binding, so it ends where the operator's namespaces end.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorIdentity {
    /// Namespace of the operator's ServiceAccount.
    pub namespace: String,
    /// Name of the operator's ServiceAccount.
    pub service_account: String,
    /// The shipped ClusterRole bound per namespace; the RoleBinding has the same name (the
    /// operator's cluster-wide rule lets it write RoleBindings of exactly that name).
    pub namespace_role: String,
}

/// What `deploy/` installs.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "tenant-operator";
pub const DEFAULT_SERVICE_ACCOUNT: &str = "tenant-operator";
pub const DEFAULT_NAMESPACE_ROLE: &str = "tenant-operator:tenant-namespace";

impl Default for OperatorIdentity {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_OPERATOR_NAMESPACE.to_string(),
            service_account: DEFAULT_SERVICE_ACCOUNT.to_string(),
            namespace_role: DEFAULT_NAMESPACE_ROLE.to_string(),
        }
    }
}

/// What every tenant namespace gets besides the tenant's own objects.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// DNS domain of the region, e.g. `uk.cloud.example.com`.
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// How the region's applications are exposed: an Ingress each, or an HTTPRoute each
    /// attached to the region's shared `gateway`.
    #[serde(default)]
    pub routing: Routing,
    /// The Gateway the HTTPRoutes attach to; required with `routing: gateway`. A region may
    /// name it while still on Ingresses, to prepare a switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Name of the TLS Secret in each tenant namespace; `{app}` is replaced by the application
    /// key. With an issuer, cert-manager creates it.
    #[serde(default = "default_tls_secret")]
    pub secret_name: String,
    /// cert-manager ClusterIssuer (annotation `cert-manager.io/cluster-issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_issuer: Option<String>,
    /// cert-manager Issuer in the tenant namespace (annotation `cert-manager.io/issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

fn default_tls_secret() -> String {
    "{app}-tls".to_string()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationConfig {
    pub service_name: String,
    pub service_port: u16,
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/".to_string()
}

/// Hostname templates with the placeholders `{tenant}`, `{env}`, `{app}` and `{domain}`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostnameTemplates {
    #[serde(default = "default_prod_template")]
    pub prod: String,
    #[serde(default = "default_non_prod_template")]
    pub non_prod: String,
}

fn default_prod_template() -> String {
    "{tenant}.{app}.{domain}".to_string()
}

fn default_non_prod_template() -> String {
    "{tenant}-{env}.{app}.{domain}".to_string()
}

impl Default for HostnameTemplates {
    fn default() -> Self {
        Self { prod: default_prod_template(), non_prod: default_non_prod_template() }
    }
}

impl HostnameTemplates {
    pub fn for_environment(&self, env: Environment) -> &str {
        match env {
            Environment::Prod => &self.prod,
            Environment::Dev | Environment::Staging => &self.non_prod,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserConfig {
    /// Prepended to a user's email to form the RBAC subject (e.g. `oidc:`), matching the
    /// API server's `--oidc-username-prefix`.
    #[serde(default)]
    pub subject_prefix: String,
    /// ClusterRoles a TenantUser may name in `customRoles` besides those labelled
    /// `tenancy.platform.dev/assignable=true`. Anything else (`cluster-admin`, say) is refused,
    /// whatever the operator itself may bind.
    #[serde(default)]
    pub assignable_roles: Vec<String>,
    /// How often Roles and RoleBindings of TenantUsers that no longer exist are revoked, in
    /// seconds. A user's finalizer revokes them on deletion; the sweep covers a finalizer
    /// removed by hand (a user may patch their own TenantUser) and deletions while the operator
    /// was down.
    #[serde(default = "default_orphan_sweep_seconds")]
    pub orphan_sweep_seconds: u64,
}

fn default_orphan_sweep_seconds() -> u64 {
    60
}

impl Default for UserConfig {
    fn default() -> Self {
        Self { subject_prefix: String::new(), assignable_roles: Vec::new(), orphan_sweep_seconds: default_orphan_sweep_seconds() }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyConfig {
    /// Namespace of the ingress controller, admitted into every tenant namespace.
    #[serde(default = "default_ingress_namespace")]
    pub ingress_controller_namespace: String,
}

fn default_ingress_namespace() -> String {
    "ingress-nginx".to_string()
}

impl Default for NetworkPolicyConfig {
    fn default() -> Self {
        Self { ingress_controller_namespace: default_ingress_namespace() }
    }
}

const PLACEHOLDERS: [&str; 4] = ["{tenant}", "{env}", "{app}", "{domain}"];

impl Config {
    /// Read and check the configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Self::parse(&text, &file)
    }

    /// Parse and check configuration text; `file` names its origin in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        // The tracked path survives the YAML deserializer's own error type, so the message can
        // name the bad field whatever the YAML crate reports.
        let mut track = serde_path_to_error::Track::new();
        let parsed = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
            Config::deserialize(serde_path_to_error::Deserializer::new(deserializer, &mut track))
        });
        let config = parsed.map_err(|err| ConfigError::Invalid {
            file: file.to_string(),
            field: track.path().to_string(),
            message: err.to_string(),
        })?;
        config.check().map_err(|(field, message)| ConfigError::Invalid { file: file.to_string(), field, message })?;
        Ok(config)
    }

    /// Rules the YAML shape cannot express; returns the bad field's path and why.
    fn check(&self) -> Result<(), (String, String)> {
        if self.clusters.is_empty() {
            return Err(("clusters".into(), "at least one cluster is required".into()));
        }
        for (key, cluster) in &self.clusters {
            check_label(&format!("clusters.{key}"), key)?;
            let field = format!("clusters.{key}.domain");
            if cluster.domain.is_empty() || !cluster.domain.split('.').all(is_dns_label) {
                return Err((field, format!("{:?} is not a DNS domain", cluster.domain)));
            }
            if cluster.routing == Routing::Gateway && cluster.gateway.is_none() {
                return Err((
                    format!("clusters.{key}.gateway"),
                    "required with routing: gateway (name and namespace of the Gateway)".into(),
                ));
            }
            if let Some(gateway) = &cluster.gateway {
                check_gateway(&format!("clusters.{key}.gateway"), gateway)?;
            }
            if let Some(tls) = &cluster.tls {
                if tls.cluster_issuer.is_some() && tls.issuer.is_some() {
                    return Err((format!("clusters.{key}.tls"), "set clusterIssuer or issuer, not both".into()));
                }
                let probe = tls.secret_name.replace("{app}", "app");
                if !is_dns_subdomain(&probe) {
                    return Err((
                        format!("clusters.{key}.tls.secretName"),
                        format!("{:?} does not make a valid Secret name", tls.secret_name),
                    ));
                }
            }
        }
        for (key, app) in &self.applications {
            check_label(&format!("applications.{key}"), key)?;
            if key.len() > 40 {
                return Err((format!("applications.{key}"), "application keys are at most 40 characters".into()));
            }
            if !is_dns_label(&app.service_name) {
                return Err((format!("applications.{key}.serviceName"), format!("{:?} is not a valid Service name", app.service_name)));
            }
            if app.service_port == 0 {
                return Err((format!("applications.{key}.servicePort"), "must be between 1 and 65535".into()));
            }
            if !app.path.starts_with('/') {
                return Err((format!("applications.{key}.path"), "must start with '/'".into()));
            }
        }
        check_template("hostnames.prod", &self.hostnames.prod, false)?;
        check_template("hostnames.nonProd", &self.hostnames.non_prod, true)?;
        if !(16..=128).contains(&self.database.password_length) {
            return Err(("database.passwordLength".into(), "must be between 16 and 128".into()));
        }
        if self.database.default_provider == DatabaseProvider::External && self.database.external.is_none() {
            return Err(("database.external".into(), "required when database.defaultProvider is external".into()));
        }
        if self.database.statefulset.image.trim().is_empty() {
            return Err(("database.statefulset.image".into(), "must not be empty".into()));
        }
        if self.database.cloudnative_pg.instances < 1 {
            return Err(("database.cloudnativePg.instances".into(), "must be at least 1".into()));
        }
        if self.users.orphan_sweep_seconds == 0 {
            return Err(("users.orphanSweepSeconds".into(), "must be at least 1".into()));
        }
        if !self.users.subject_prefix.chars().all(|c| !c.is_whitespace()) {
            return Err(("users.subjectPrefix".into(), "must not contain whitespace".into()));
        }
        if !is_dns_label(&self.network_policy.ingress_controller_namespace) {
            return Err(("networkPolicy.ingressControllerNamespace".into(), "is not a valid namespace name".into()));
        }
        namespaces::check(&self.namespaces)?;
        if !is_header_name(&self.tenant_header) {
            return Err(("tenantHeader".into(), format!("{:?} is not an HTTP header name", self.tenant_header)));
        }
        if self.tenant_header.eq_ignore_ascii_case(crate::desired::tenant::route::ENVIRONMENT_HEADER) {
            return Err((
                "tenantHeader".into(),
                format!(
                    "{} is the header that carries the environment; choose another name",
                    crate::desired::tenant::route::ENVIRONMENT_HEADER
                ),
            ));
        }
        Ok(())
    }

    /// Hostname templates that can give two tenants (or two applications) the same host. Not
    /// errors, because a platform may know its slugs and application keys never collide, but
    /// logged at start. Slugs and application keys may contain `-`, so after `{tenant}` or
    /// `{app}` only a `.` (or, after `{tenant}`, `-{env}`: slugs cannot end in an environment
    /// name) keeps the parts apart.
    pub fn hostname_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (field, template) in [("hostnames.prod", &self.hostnames.prod), ("hostnames.nonProd", &self.hostnames.non_prod)] {
            for placeholder in ["{tenant}", "{app}"] {
                for (at, _) in template.match_indices(placeholder) {
                    let rest = &template[at + placeholder.len()..];
                    let separated = rest.is_empty() || rest.starts_with('.') || (placeholder == "{tenant}" && rest.starts_with("-{env}"));
                    if !separated {
                        warnings.push(format!(
                            "{field}: {template:?} does not separate {placeholder} from what follows by a '.', so two tenants or \
                             applications may get the same hostname; the operator refuses the newer Tenant's contested hosts \
                             (HostnameConflict)"
                        ));
                    }
                }
            }
        }
        warnings
    }
}

fn check_label(field: &str, value: &str) -> Result<(), (String, String)> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err((field.to_string(), format!("key {value:?} must be a DNS-1123 label (lower-case letters, digits, '-')")))
    }
}

/// A hostname template must keep tenants (and, outside prod, environments) apart, so two
/// tenants can never be given the same hostname.
fn check_template(field: &str, template: &str, needs_env: bool) -> Result<(), (String, String)> {
    for required in ["{tenant}", "{app}"].into_iter().chain(needs_env.then_some("{env}")) {
        if !template.contains(required) {
            return Err((field.to_string(), format!("template {template:?} must contain {required}")));
        }
    }
    let mut rest = template.to_string();
    for placeholder in PLACEHOLDERS {
        rest = rest.replace(placeholder, "x");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err((field.to_string(), format!("template {template:?} has an unknown placeholder; known: {}", PLACEHOLDERS.join(", "))));
    }
    if !rest.split('.').all(is_dns_label) {
        return Err((field.to_string(), format!("template {template:?} does not produce a valid hostname")));
    }
    Ok(())
}

/// RFC 1123 label: 1..63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests;

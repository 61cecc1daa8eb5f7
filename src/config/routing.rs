//! How a region exposes its applications (`routing`), the Gateway that `routing: gateway`
//! attaches their HTTPRoutes to, and the header that carries the tenant's ID behind it.

use serde::{Deserialize, Serialize};

use super::{is_dns_label, is_dns_subdomain, ClusterConfig};

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Routing {
    #[default]
    Ingress,
    Gateway,
}

/// A Gateway (`gateway.networking.k8s.io/v1`) shared by the tenants of a region.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRef {
    pub name: String,
    pub namespace: String,
    /// The listener the routes attach to; all listeners that admit them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Namespace of the Gateway's data-plane pods (the proxies that connect to the tenants'
    /// Services), admitted by every tenant NetworkPolicy of the region. Default: the Gateway's
    /// namespace (Istio, Cilium); Envoy Gateway runs its proxies in its own namespace
    /// (`envoy-gateway-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane_namespace: Option<String>,
}

impl GatewayRef {
    pub fn data_plane_namespace(&self) -> &str {
        self.data_plane_namespace.as_deref().unwrap_or(&self.namespace)
    }

    /// `namespace/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl ClusterConfig {
    /// The Gateway the region's routes attach to, when it routes through one.
    pub fn routing_gateway(&self) -> Option<&GatewayRef> {
        self.gateway.as_ref().filter(|_| self.routing == Routing::Gateway)
    }
}

pub(super) fn default_tenant_header() -> String {
    "X-Tenant-ID".to_string()
}

pub(super) fn check_gateway(field: &str, gateway: &GatewayRef) -> Result<(), (String, String)> {
    if !is_dns_subdomain(&gateway.name) {
        return Err((format!("{field}.name"), format!("{:?} is not a valid Gateway name", gateway.name)));
    }
    if !is_dns_label(&gateway.namespace) {
        return Err((format!("{field}.namespace"), format!("{:?} is not a valid namespace name", gateway.namespace)));
    }
    if let Some(section) = &gateway.section_name {
        if !is_dns_subdomain(section) {
            return Err((format!("{field}.sectionName"), format!("{section:?} is not a valid listener name")));
        }
    }
    if let Some(namespace) = &gateway.data_plane_namespace {
        if !is_dns_label(namespace) {
            return Err((format!("{field}.dataPlaneNamespace"), format!("{namespace:?} is not a valid namespace name")));
        }
    }
    Ok(())
}

/// A header name of letters, digits and `-`, at most 256 characters: what every gateway
/// passes on unchanged (the Gateway API's `HTTPHeaderName` admits a few more token characters).
pub(super) fn is_header_name(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

//! Errors of `kubectl tenant`: plain sentences with the fix, and an exit code per kind so
//! scripts can tell "not found" from "not allowed".

use std::process::ExitCode;

/// Exit codes (2 is clap's usage error).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_NOT_ALLOWED: u8 = 4;
pub const EXIT_NO_CRDS: u8 = 5;
pub const EXIT_TIMED_OUT: u8 = 6;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{what} does not exist. {fix}")]
    NotFound { what: String, fix: String },
    #[error(
        "you are not allowed to {verb} {resource}{scope}: the API server refused it ({message}). Ask a cluster administrator \
         for a Role or ClusterRole granting `{verb}` on `{resource}`, e.g. the `tenancy:viewer` ClusterRole for reading"
    )]
    NotAllowed { verb: String, resource: String, scope: String, message: String },
    #[error(
        "the API server does not serve tenants.tenancy.platform.dev: the tenant-operator CRDs are not installed on this cluster \
         (or this kubeconfig points at another cluster). Install them with `kubectl apply -k deploy/crds` or the Helm chart"
    )]
    NoCrds,
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot reach the API server: {0}. Check the current context (`kubectl config current-context`)")]
    Connection(String),
    #[error("{0}")]
    Other(String),
}

impl PluginError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            PluginError::NotFound { .. } => EXIT_NOT_FOUND,
            PluginError::NotAllowed { .. } => EXIT_NOT_ALLOWED,
            PluginError::NoCrds => EXIT_NO_CRDS,
            PluginError::TimedOut(_) => EXIT_TIMED_OUT,
            PluginError::Refused(_) | PluginError::Connection(_) | PluginError::Other(_) => EXIT_FAILED,
        })
    }
}

/// What a request was, to name it in an error.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    /// The object asked for by name, if any: its 404 means it does not exist.
    pub name: Option<&'a str>,
}

/// A kube error as a sentence with the fix.
pub fn classify(request: Request<'_>, error: kube::Error) -> PluginError {
    match error {
        kube::Error::Api(status) if status.code == 403 => PluginError::NotAllowed {
            verb: request.verb.to_string(),
            resource: request.resource.to_string(),
            scope: request.namespace.map(|ns| format!(" in namespace {ns}")).unwrap_or_else(|| " (cluster-wide)".to_string()),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 404 => {
            // A missing object names itself in the answer; a missing resource type does not.
            let object_missing = request.name.is_some_and(|name| status.message.contains(&format!("\"{name}\"")));
            match (request.name, object_missing) {
                (Some(name), true) if request.resource.starts_with("tenants") => {
                    PluginError::NotFound { what: format!("Tenant {name}"), fix: "List the tenants with `kubectl tenant list`".to_string() }
                }
                (Some(name), true) => {
                    PluginError::NotFound { what: format!("{} {name}", request.resource), fix: "Check the name".to_string() }
                }
                _ if request.resource.contains("tenancy.platform.dev") => PluginError::NoCrds,
                _ => PluginError::Other(format!("the API server does not serve {}: {}", request.resource, status.message)),
            }
        }
        kube::Error::Api(status) => PluginError::Other(format!(
            "the API server refused to {} {}: {} ({})",
            request.verb, request.resource, status.message, status.reason
        )),
        kube::Error::HyperError(e) => PluginError::Connection(e.to_string()),
        kube::Error::Service(e) => PluginError::Connection(e.to_string()),
        other => PluginError::Other(format!("cannot {} {}: {other}", request.verb, request.resource)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed())
    }

    const GET_TENANT: Request<'static> =
        Request { verb: "get", resource: "tenants.tenancy.platform.dev", namespace: None, name: Some("acme") };

    #[test]
    fn a_missing_tenant_and_missing_crds_are_told_apart() {
        let missing = classify(GET_TENANT, api(404, "tenants.tenancy.platform.dev \"acme\" not found"));
        assert!(matches!(missing, PluginError::NotFound { .. }));
        assert_eq!(missing.to_string(), "Tenant acme does not exist. List the tenants with `kubectl tenant list`");
        assert_eq!(missing.exit_code(), ExitCode::from(EXIT_NOT_FOUND));
        let no_crds = classify(GET_TENANT, api(404, "the server could not find the requested resource"));
        assert!(matches!(no_crds, PluginError::NoCrds), "{no_crds}");
        assert_eq!(no_crds.exit_code(), ExitCode::from(EXIT_NO_CRDS));
    }

    #[test]
    fn a_refusal_names_the_verb_and_the_resource() {
        let request = Request { verb: "patch", resource: "tenants.tenancy.platform.dev", namespace: None, name: Some("acme") };
        let error = classify(request, api(403, "tenants.tenancy.platform.dev \"acme\" is forbidden: User \"jane\" cannot patch"));
        let text = error.to_string();
        assert!(text.starts_with("you are not allowed to patch tenants.tenancy.platform.dev (cluster-wide)"), "{text}");
        assert!(text.contains("granting `patch` on `tenants.tenancy.platform.dev`"), "{text}");
        assert_eq!(error.exit_code(), ExitCode::from(EXIT_NOT_ALLOWED));
    }
}

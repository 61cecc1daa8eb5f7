//! Why a reconcile did not complete. Problems a person must fix (an unknown cluster, a
//! conflict) are not errors: they are reported in status and the reconcile succeeds. Errors
//! are what a retry may cure (API failures, waiting for a deletion).

use kube::runtime::finalizer;

use crate::database::external::ExternalDbError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {}", describe_kube_error(.0))]
    Kube(#[from] kube::Error),
    #[error("{}", describe_finalizer_error(.0))]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("waiting for {0} to be deleted")]
    WaitingForDeletion(String),
    #[error("external database: {0}")]
    Database(#[from] ExternalDbError),
    #[error("an object the operator built cannot be serialized: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("the object has no name")]
    MissingName,
}

/// A bounded classification of [`Error`]: the `error` label of the failure metric, and what
/// the back-off does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Conflict,
    Throttled,
    Kube,
    Finalizer,
    /// Not a failure: something is being deleted and the reconcile comes back soon.
    Waiting,
    Database,
    Invalid,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Kube => "kube",
            ErrorKind::Finalizer => "finalizer",
            ErrorKind::Waiting => "waiting",
            ErrorKind::Database => "database",
            ErrorKind::Invalid => "invalid",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => ErrorKind::Conflict,
            Error::Kube(kube::Error::Api(status)) if status.code == 429 => ErrorKind::Throttled,
            Error::Kube(_) => ErrorKind::Kube,
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => ErrorKind::Finalizer,
            },
            Error::WaitingForDeletion(_) => ErrorKind::Waiting,
            Error::Database(_) => ErrorKind::Database,
            Error::Serialization(_) | Error::MissingName => ErrorKind::Invalid,
        }
    }
}

/// The API server's own sentence for a refused request, never the Rust structure.
pub fn describe_kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => format!("{} (HTTP {})", status.message, status.code),
        kube::Error::Api(status) => format!("HTTP {} {}", status.code, status.reason),
        other => other.to_string(),
    }
}

fn describe_finalizer_error(error: &finalizer::Error<Error>) -> String {
    match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.to_string(),
        finalizer::Error::AddFinalizer(e) => format!("cannot add the finalizer: {}", describe_kube_error(e)),
        finalizer::Error::RemoveFinalizer(e) => format!("cannot remove the finalizer: {}", describe_kube_error(e)),
        finalizer::Error::UnnamedObject => "the object has no name".to_string(),
        finalizer::Error::InvalidFinalizer => "the finalizer name is invalid".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure(message, "Forbidden").with_code(code)))
    }

    #[test]
    fn kinds_classify_api_errors() {
        assert_eq!(Error::Kube(api_error(409, "conflict")).kind(), ErrorKind::Conflict);
        assert_eq!(Error::Kube(api_error(429, "slow down")).kind(), ErrorKind::Throttled);
        assert_eq!(Error::Kube(api_error(500, "boom")).kind(), ErrorKind::Kube);
        assert_eq!(Error::WaitingForDeletion("x".into()).kind(), ErrorKind::Waiting);
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(Error::WaitingForDeletion("x".into()))));
        assert_eq!(wrapped.kind(), ErrorKind::Waiting);
    }

    #[test]
    fn messages_quote_the_api_server_not_the_rust_structure() {
        let error = Error::Kube(api_error(403, "rolebindings.rbac.authorization.k8s.io is forbidden: no bind"));
        let text = error.to_string();
        assert!(text.contains("is forbidden: no bind (HTTP 403)"), "{text}");
        assert!(!text.contains("Status {"), "{text}");
    }
}

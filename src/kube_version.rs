//! The oldest Kubernetes the operator runs on, and the check of the API server's `/version`
//! at start.
//!
//! Why 1.30: the CRDs validate with CEL (`x-kubernetes-validations`, GA in 1.29) and use the
//! Kubernetes quantity library (`isQuantity`), which an API server accepts in new CRDs from 1.29
//! on; the self-service limits of TenantUsers are a ValidatingAdmissionPolicy of
//! `admissionregistration.k8s.io/v1`, served from 1.30. An older API server stores the CRDs but
//! silently drops what it does not know, so invalid Tenants would be accepted: refuse instead.

use std::fmt;

/// The oldest supported Kubernetes minor version (major 1).
pub const MIN_MINOR: u32 = 30;

/// Setting this environment variable to `true` (or the `--skip-version-check` flag of `run`)
/// runs the operator against an older API server anyway.
pub const SKIP_ENV: &str = "TENANT_OPERATOR_SKIP_VERSION_CHECK";

/// A Kubernetes `major.minor` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The minimum, as a version.
pub const MINIMUM: KubeVersion = KubeVersion { major: 1, minor: MIN_MINOR };

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error(
        "the Kubernetes API server is {found} ({git_version}); tenant-operator needs {MINIMUM} or newer \
         (its CRDs use CEL validation with the quantity library, and the TenantUser admission policy \
         needs admissionregistration.k8s.io/v1). Upgrade the cluster, or set {SKIP_ENV}=1 \
         (or pass --skip-version-check) to run anyway, knowing that the API server then accepts \
         Tenants the schema would reject"
    )]
    TooOld { found: KubeVersion, git_version: String },
    #[error("cannot read the Kubernetes version from the API server's /version (major {major:?}, minor {minor:?}, gitVersion {git_version:?}); set {SKIP_ENV}=1 to run anyway")]
    Unreadable { major: String, minor: String, git_version: String },
}

/// The leading decimal digits of `text` ("30+" on some managed clusters is 30).
fn leading_number(text: &str) -> Option<u32> {
    let digits: String = text.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The version in the fields of `/version`: `major` and `minor` when they parse (providers
/// append `+` to them), else `gitVersion` (`v1.31.2-eks-7f9249a`).
pub fn parse(major: &str, minor: &str, git_version: &str) -> Option<KubeVersion> {
    if let (Some(major), Some(minor)) = (leading_number(major), leading_number(minor)) {
        return Some(KubeVersion { major, minor });
    }
    let rest = git_version.trim().trim_start_matches('v');
    let mut parts = rest.splitn(3, '.');
    let major = leading_number(parts.next()?)?;
    let minor = leading_number(parts.next()?)?;
    Some(KubeVersion { major, minor })
}

/// `Ok` with the version when the API server is new enough.
pub fn check(major: &str, minor: &str, git_version: &str) -> Result<KubeVersion, VersionError> {
    let found = parse(major, minor, git_version).ok_or_else(|| VersionError::Unreadable {
        major: major.to_string(),
        minor: minor.to_string(),
        git_version: git_version.to_string(),
    })?;
    if found < MINIMUM {
        return Err(VersionError::TooOld { found, git_version: git_version.to_string() });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_provider_suffixed_versions_parse() {
        assert_eq!(parse("1", "30", "v1.30.4"), Some(KubeVersion { major: 1, minor: 30 }));
        assert_eq!(parse("1", "31+", "v1.31.2-eks-7f9249a"), Some(KubeVersion { major: 1, minor: 31 }));
        assert_eq!(parse(" 1 ", "33", "v1.33.0+k3s1"), Some(KubeVersion { major: 1, minor: 33 }));
    }

    #[test]
    fn git_version_is_the_fallback_when_major_or_minor_is_empty() {
        assert_eq!(parse("", "", "v1.32.1-gke.1234"), Some(KubeVersion { major: 1, minor: 32 }));
        assert_eq!(parse("1", "", "1.29.0"), Some(KubeVersion { major: 1, minor: 29 }));
        assert_eq!(parse("", "", "devel"), None);
        assert_eq!(parse("", "", ""), None);
    }

    #[test]
    fn the_minimum_and_newer_pass() {
        assert_eq!(check("1", "30", "v1.30.0"), Ok(KubeVersion { major: 1, minor: 30 }));
        assert!(check("1", "37", "v1.37.0").is_ok());
        // Minor 100 compares as a number, not as text.
        assert!(check("1", "100", "v1.100.0").is_ok());
        assert!(check("2", "0", "v2.0.0").is_ok());
    }

    #[test]
    fn older_servers_are_refused_with_the_way_out() {
        let err = check("1", "29+", "v1.29.8-eks-a737599").unwrap_err();
        assert_eq!(err, VersionError::TooOld { found: KubeVersion { major: 1, minor: 29 }, git_version: "v1.29.8-eks-a737599".into() });
        let text = err.to_string();
        assert!(text.contains("1.29") && text.contains("needs 1.30 or newer"), "{text}");
        assert!(text.contains(SKIP_ENV) && text.contains("--skip-version-check"), "{text}");
        assert!(check("1", "24", "v1.24.17").is_err());
    }

    #[test]
    fn an_unreadable_version_is_an_error_not_a_pass() {
        let err = check("", "", "unknown").unwrap_err();
        assert!(matches!(err, VersionError::Unreadable { .. }));
        assert!(err.to_string().contains(SKIP_ENV));
    }
}

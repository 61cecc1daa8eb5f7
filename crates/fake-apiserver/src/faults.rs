//! Fault injection and request accounting.

use std::collections::BTreeMap;
use std::time::Duration;

/// One request as the fake saw it (for RBAC coverage checks).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestRecord {
    /// get, list, watch, create, update, patch, delete.
    pub verb: String,
    pub group: String,
    pub version: String,
    /// Plural, with `/subresource` when there is one (e.g. `tenants/status`).
    pub resource: String,
    /// `Some(ns)` for a namespaced request.
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// HTTP status answered (0 for a watch stream or a hang).
    pub code: u16,
    /// Who asked: the bearer token of the `Authorization` header (see
    /// `FakeApiServer::client_as`), `None` without one.
    pub user: Option<String>,
}

impl RequestRecord {
    /// `group/resource` (`resource` alone for the core group), as used by counts and faults.
    pub fn gr(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.group, self.resource)
        }
    }
}

/// Counts per (verb, `group/resource[/subresource]`), e.g. `("patch", "tenancy.platform.dev/tenants/status")`
/// or `("get", "configmaps")`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<(String, String), usize>);

pub const WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

impl RequestCounts {
    pub fn get(&self, verb: &str, resource: &str) -> usize {
        self.0.get(&(verb.to_string(), resource.to_string())).copied().unwrap_or(0)
    }

    /// Sum over all resources for a verb.
    pub fn verb(&self, verb: &str) -> usize {
        self.0.iter().filter(|((v, _), _)| v == verb).map(|(_, n)| n).sum()
    }

    pub fn writes(&self) -> usize {
        WRITE_VERBS.iter().map(|v| self.verb(v)).sum()
    }

    /// Counts that grew since `earlier`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let d = n - earlier.0.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Answer with this HTTP status and a matching `Status` body.
    Status(u16),
    /// Do not answer for this long (then answer 504), to exercise client timeouts.
    Hang(Duration),
}

#[derive(Clone, Debug)]
pub struct Fault {
    /// Verb to match, `*` for any.
    pub verb: String,
    /// `group/resource[/subresource]` (or plural alone) to match, `*` for any.
    pub resource: String,
    pub action: FaultAction,
    pub remaining: usize,
    /// Only requests of this caller (`RequestRecord::user`); `None` for any.
    pub user: Option<String>,
}

impl Fault {
    pub fn matches(&self, rec: &RequestRecord) -> bool {
        let verb_ok = self.verb == "*" || self.verb == rec.verb;
        let res_ok = self.resource == "*" || self.resource == rec.gr() || self.resource == rec.resource;
        let user_ok = self.user.is_none() || self.user == rec.user;
        verb_ok && res_ok && user_ok && self.remaining > 0
    }
}

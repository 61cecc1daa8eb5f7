//! The requests a scenario's operator makes on a real cluster, recorded by its own client (the
//! fake records them server-side): the same [`RequestRecord`]s and [`RequestCounts`] as the fake's,
//! so that the scenarios about what the operator writes (a quiet resync, the write budget of a
//! creation) check the same thing on both.
//!
//! One record per request the operator's code makes (the client's own retries of 429/503 are
//! below this layer; a real server sends them rarely and the fake counts each).

use std::sync::{Arc, Mutex};

use axum::http::{Method, Uri};
use fake_apiserver::{RequestCounts, RequestRecord};

#[derive(Clone, Default, Debug)]
pub struct RequestLog {
    records: Arc<Mutex<Vec<RequestRecord>>>,
    user: Arc<Mutex<Option<String>>>,
}

impl RequestLog {
    /// Records carry this user name (the identity the client acts as).
    pub fn for_user(user: &str) -> Self {
        let log = RequestLog::default();
        if let Ok(mut u) = log.user.lock() {
            *u = Some(user.to_string());
        }
        log
    }

    /// Record a resource request and the status it was answered with (API discovery and other
    /// non-resource paths are left out, as they are from the fake's counts).
    pub fn record(&self, method: &Method, uri: &Uri, code: u16) {
        let Some(mut record) = parse(method, uri.path(), uri.query().unwrap_or_default()) else {
            return;
        };
        record.code = code;
        record.user = self.user.lock().ok().and_then(|u| u.clone());
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
    }

    /// Every request recorded so far, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Counts per `(verb, group/resource)`, as `FakeApiServer::request_counts`.
    pub fn counts(&self) -> RequestCounts {
        let mut counts = RequestCounts::default();
        for r in self.records() {
            *counts.0.entry((r.verb.clone(), r.gr())).or_default() += 1;
        }
        counts
    }
}

/// The verb, group, version, resource (with subresource), namespace and name of a request path.
pub fn parse(method: &Method, path: &str, query: &str) -> Option<RequestRecord> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    // `namespaces/<ns>/<resource>...`, except a Namespace itself (`namespaces/<name>[/status]`).
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] if !(tail.is_empty() && matches!(*resource, "status" | "finalize")) => {
            (Some(ns.to_string()), [&[*resource][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let resource = match rest.as_slice() {
        [resource] | [resource, _] => resource.to_string(),
        [resource, _, subresource] => format!("{resource}/{subresource}"),
        _ => return None,
    };
    let name = rest.get(1).map(|n| n.to_string());
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(RequestRecord {
        verb: verb.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        resource,
        namespace,
        name,
        code: 0,
        user: None,
    })
}

//! `meta/v1 Status` error bodies, shaped like the real API server's.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::resources::ResourceType;

/// One entry of `details.causes[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause { reason: reason.to_string(), field: field.into(), message: message.into() }
    }

    /// `field: message` as the real server prints a `field.Error`.
    pub fn display(&self) -> String {
        if self.field.is_empty() {
            format!("<nil>: {}", self.message)
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// An error answered as a `Status` object.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError { code, reason: reason.to_string(), message: message.into(), details: None, retry_after: None }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn resource_details(rt: &ResourceType, name: &str) -> Value {
        let mut d = json!({ "name": name, "kind": rt.plural });
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{}\" not found", rt.qualified(), name)).with_details(Self::resource_details(rt, name))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found")).with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", rt.qualified(), name))
            .with_details(Self::resource_details(rt, name))
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified(),
                name
            ),
        )
        .with_details(Self::resource_details(rt, name))
    }

    pub fn conflict_uid(rt: &ResourceType, name: &str, msg: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{}\": {}", rt.qualified(), name, msg))
            .with_details(Self::resource_details(rt, name))
    }

    /// 422 Invalid with causes, message `Kind.group "name" is invalid: ...`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[Cause]) -> Self {
        let gk = if rt.group.is_empty() { rt.kind.clone() } else { format!("{}.{}", rt.kind, rt.group) };
        let body = if causes.len() == 1 {
            causes[0].display()
        } else {
            format!("[{}]", causes.iter().map(Cause::display).collect::<Vec<_>>().join(", "))
        };
        let mut d = json!({ "name": name, "kind": rt.kind });
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| {
                    let mut v = json!({"reason": c.reason, "message": c.message});
                    if !c.field.is_empty() {
                        v["field"] = json!(c.field);
                    }
                    v
                })
                .collect(),
        );
        Self::new(422, "Invalid", format!("{gk} \"{name}\" is invalid: {body}")).with_details(d)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn namespace_terminating(rt: &ResourceType, name: &str, ns: &str) -> Self {
        let mut d = Self::resource_details(rt, name);
        d["causes"] = json!([{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {ns} is being terminated"),
            "field": "metadata.namespace"
        }]);
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                rt.qualified(),
                name,
                ns
            ),
        )
        .with_details(d)
    }

    /// `apierrors.NewForbidden`: 403 on `resource.group "name"` because of `err`.
    pub fn forbidden(group: &str, resource: &str, name: &str, err: &str) -> Self {
        let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        let message = match (qualified.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {err}"),
            (false, true) => format!("{qualified} is forbidden: {err}"),
            (false, false) => format!("{qualified} {name:?} is forbidden: {err}"),
        };
        let mut d = json!({"kind": resource});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        Self::new(403, "Forbidden", message).with_details(d)
    }

    /// 401 for a bearer token the server does not know.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    /// An injected failure: a Status body that matches the HTTP code.
    pub fn injected(code: u16) -> Self {
        match code {
            409 => Self::new(409, "Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected)"),
            429 => {
                let mut e = Self::new(429, "TooManyRequests", "Too many requests, please try again later. (injected)")
                    .with_details(json!({"retryAfterSeconds": 1}));
                e.retry_after = Some(1);
                e
            }
            500 => Self::new(500, "InternalError", "Internal error occurred: injected failure"),
            503 => Self::new(503, "ServiceUnavailable", "The server is currently unable to handle the request (injected)"),
            504 => Self::new(504, "Timeout", "The server was unable to return a response in the time allotted (injected)"),
            403 => Self::new(403, "Forbidden", "forbidden (injected)"),
            404 => Self::new(404, "NotFound", "not found (injected)"),
            410 => Self::gone("too old resource version (injected)"),
            c => Self::new(c, "InternalError", format!("injected failure with code {c}")),
        }
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, [("content-type", "application/json")], self.to_status().to_string()).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert("retry-after", HeaderValue::from_str(&secs.to_string()).unwrap());
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

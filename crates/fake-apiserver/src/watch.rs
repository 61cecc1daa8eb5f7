//! Watch streams: newline-delimited JSON events from a resourceVersion on, bookmarks,
//! `sendInitialEvents`, `timeoutSeconds`, and `410 Expired` as an ERROR event (the real
//! server answers HTTP 200 and sends the error in the stream).
//!
//! A watcher waits on its own resource's signal (a write of another resource does not wake
//! it), copies the new events out of the resource's history under the lock (cheap: they are
//! shared), and filters and writes them after releasing it. An event's object is serialized
//! once, by the first watcher that sends it; the others reuse the text.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::resources::ResourceType;
use super::selectors::Selectors;
use super::store::{present_json, EventType, HistEvent, Presentation, State};
use super::Inner;

pub struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    /// Whole objects, or their metadata alone.
    pub presentation: Presentation,
}

/// One event line around an object already written as JSON.
fn line_json(etype: &str, object: &str) -> String {
    format!("{{\"type\":\"{etype}\",\"object\":{object}}}\n")
}

fn line(etype: &str, object: &Value) -> String {
    line_json(etype, &object.to_string())
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> String {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}))
}

fn expired(rv: u64, oldest: u64) -> String {
    let status = ApiError::gone(format!("too old resource version: {rv} ({oldest})")).to_status();
    line("ERROR", &status)
}

/// The event a watcher with these selectors sees for a change of its resource, if any.
fn transform(req: &WatchRequest, ev: &HistEvent) -> Option<String> {
    if let Some(ns) = &req.namespace {
        if *ns != ev.namespace {
            return None;
        }
    }
    let now = req.selectors.matches(&ev.object);
    let before = ev.old.as_ref().is_some_and(|o| req.selectors.matches(o));
    let etype = match ev.etype {
        EventType::Added | EventType::Deleted => now.then_some(ev.etype.as_str())?,
        EventType::Modified => match (before, now) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
    };
    if req.presentation == Presentation::Metadata {
        return Some(line_json(etype, &req.presentation.json(&req.rt, &ev.object)));
    }
    // The shared text is the stored version's; a watch of another version of the resource
    // gets its own.
    if ev.object.get("apiVersion").and_then(Value::as_str) == Some(req.rt.api_version().as_str()) {
        Some(line_json(etype, ev.json.get_or_init(|| ev.object.to_string())))
    } else {
        Some(line_json(etype, &present_json(&req.rt, &ev.object)))
    }
}

/// Start a watch; the response body streams until the timeout or the client goes away.
pub fn start(inner: Arc<Inner>, req: WatchRequest) -> Result<Body, ApiError> {
    let start_rv = match req.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::new(400, "BadRequest", format!("resourceVersion: Invalid value: {s:?}: must be a valid resource version"))
        })?),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let bookmark_interval = inner.bookmark_interval;
    let res = State::res_key(&req.rt);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + req.timeout;
        // initial state
        let (mut changed, mut last, initial, gone) = {
            let mut state = inner.state.lock().unwrap();
            let mut changed = state.subscribe(&res);
            changed.borrow_and_update();
            let initial_list = |state: &State| -> Vec<String> {
                let mut lines: Vec<String> = state
                    .list(&req.rt, req.namespace.as_deref(), &req.selectors)
                    .iter()
                    .map(|o| line_json("ADDED", &req.presentation.json(&req.rt, o)))
                    .collect();
                if req.send_initial_events && req.bookmarks {
                    lines.push(bookmark(&req.rt, state.rv, true));
                }
                lines
            };
            match start_rv {
                None => (changed, state.rv, initial_list(&state), false),
                Some(rv) => match state.events_after(&res, rv) {
                    Err(oldest) => (changed, rv, vec![expired(rv, oldest)], true),
                    Ok(_) if req.send_initial_events => (changed, state.rv, initial_list(&state), false),
                    Ok(_) => (changed, rv, Vec::new(), false),
                },
            }
        };
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if gone {
            return;
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + bookmark_interval, bookmark_interval);
        let mut tick = false;
        loop {
            let (events, current) = {
                let state = inner.state.lock().unwrap();
                changed.borrow_and_update();
                (state.events_after(&res, last), state.rv.max(last))
            };
            let events = match events {
                Ok(events) => events,
                Err(oldest) => {
                    let _ = tx.send(expired(last, oldest)).await;
                    return;
                }
            };
            for ev in &events {
                if let Some(l) = transform(&req, ev) {
                    if tx.send(l).await.is_err() {
                        return;
                    }
                }
            }
            // Every change of this resource up to `current` has been seen.
            last = current;
            if tick && req.bookmarks && tx.send(bookmark(&req.rt, last, false)).await.is_err() {
                return;
            }
            tick = false;
            tokio::select! {
                r = changed.changed() => { if r.is_err() { return; } }
                _ = ticker.tick() => tick = true,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|l| (Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(l)), rx))
    });
    Ok(Body::from_stream(stream))
}

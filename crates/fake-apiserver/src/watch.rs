//! Watch streams: newline-delimited JSON events from a resourceVersion on, bookmarks,
//! `sendInitialEvents`, `timeoutSeconds`, and `410 Expired` as an ERROR event (the real
//! server answers HTTP 200 and sends the error in the stream).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::resources::ResourceType;
use super::selectors::Selectors;
use super::store::{EventType, HistEvent, State};
use super::Inner;

pub struct WatchRequest {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
}

fn line(etype: &str, object: &Value) -> String {
    let mut s = json!({"type": etype, "object": object}).to_string();
    s.push('\n');
    s
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

/// The event a watcher with these selectors sees for a change, if any.
fn transform(req: &WatchRequest, ev: &HistEvent) -> Option<String> {
    if ev.res != State::res_key(&req.rt) {
        return None;
    }
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
    Some(line(etype, &State::present(&req.rt, &ev.object)))
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
    let mut rv_rx = inner.rv_rx.clone();
    let bookmark_interval = inner.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + req.timeout;
        // initial state
        let (mut last, initial, gone): (u64, Vec<String>, bool) = {
            let state = inner.state.lock().unwrap();
            rv_rx.borrow_and_update();
            match start_rv {
                None => {
                    let ns = req.namespace.as_deref();
                    let items = state.list(&req.rt, ns, &req.selectors);
                    let mut lines: Vec<String> = items.iter().map(|o| line("ADDED", o)).collect();
                    if req.send_initial_events && req.bookmarks {
                        lines.push(bookmark(&req.rt, state.rv, true));
                    }
                    (state.rv, lines, false)
                }
                Some(rv) if rv < state.compacted_rv => (rv, vec![expired(rv, state.compacted_rv + 1)], true),
                Some(rv) => {
                    let mut lines = Vec::new();
                    if req.send_initial_events {
                        let items = state.list(&req.rt, req.namespace.as_deref(), &req.selectors);
                        lines.extend(items.iter().map(|o| line("ADDED", o)));
                        if req.bookmarks {
                            lines.push(bookmark(&req.rt, state.rv, true));
                        }
                        (state.rv, lines, false)
                    } else {
                        (rv, lines, false)
                    }
                }
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
        loop {
            let (lines, cur) = {
                let state = inner.state.lock().unwrap();
                rv_rx.borrow_and_update();
                if last < state.compacted_rv {
                    (vec![expired(last, state.compacted_rv + 1)], None)
                } else {
                    let lines: Vec<String> = state.history.iter().filter(|e| e.rv > last).filter_map(|e| transform(&req, e)).collect();
                    (lines, Some(state.rv.max(last)))
                }
            };
            for l in lines {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
            match cur {
                None => return,
                Some(c) => last = c,
            }
            tokio::select! {
                r = rv_rx.changed() => { if r.is_err() { return; } }
                _ = ticker.tick() => {
                    if req.bookmarks && tx.send(bookmark(&req.rt, last, false)).await.is_err() {
                        return;
                    }
                }
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

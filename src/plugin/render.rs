//! Text output of `kubectl tenant` (pure): the status tree and the tables. Colour only when
//! asked ([`Style::color`], decided by the caller from whether stdout is a terminal).

use jiff::Timestamp;

use super::view::{ListRow, TenantView, UserView};

#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
    fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }
    fn busy(self, text: &str) -> String {
        self.paint("33", text)
    }
    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    /// A condition's status in its colour: `Ready=True` is good, `Stalled=True` bad.
    fn status(self, type_: &str, status: &str) -> String {
        match (type_, status) {
            ("Ready", "True") | ("Reconciling" | "Stalled", "False") => self.good(status),
            ("Stalled", "True") | ("Ready", "False") => self.bad(status),
            _ => self.busy(status),
        }
    }
    fn phase(self, phase: &str) -> String {
        match phase {
            "Ready" => self.good(phase),
            "Failed" => self.bad(phase),
            _ => self.busy(phase),
        }
    }
    fn yes_no(self, ok: bool, yes: &str, no: &str) -> String {
        if ok {
            self.good(yes)
        } else {
            self.bad(no)
        }
    }
}

/// Lines of a tree: each node is its text and its children.
struct Node {
    text: String,
    children: Vec<Node>,
}

fn node(text: impl Into<String>, children: Vec<Node>) -> Node {
    Node { text: text.into(), children }
}

fn leaf(text: impl Into<String>) -> Node {
    node(text, Vec::new())
}

fn draw(nodes: &[Node], prefix: &str, out: &mut String) {
    for (i, n) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        out.push_str(prefix);
        out.push_str(if last { "└─ " } else { "├─ " });
        out.push_str(&n.text);
        out.push('\n');
        draw(&n.children, &format!("{prefix}{}", if last { "   " } else { "│  " }), out);
    }
}

/// `kubectl tenant status`: the Tenant as a tree.
pub fn tree(view: &TenantView, style: Style) -> String {
    let mut out = format!(
        "{} {} ({}, cluster {}) phase {}{}\n",
        style.bold("Tenant"),
        style.bold(&view.name),
        view.display_name,
        view.cluster,
        style.phase(&view.phase),
        if view.suspended { " (spec.suspend: true)" } else { "" }
    );
    let mut top = Vec::new();
    top.push(node(
        "Conditions",
        view.conditions
            .iter()
            .map(|c| leaf(format!("{}={} {}: {}", c.type_, style.status(&c.type_, &c.status), c.reason, c.message)))
            .collect(),
    ));
    for env in &view.environments {
        let mut children = vec![leaf(format!("Namespace {} ({})", env.namespace, env.state))];
        for host in &env.hosts {
            let address = match (&host.route, &host.address) {
                (Some(route), _) if route.accepted => style.good(&format!("route {}", route.detail)),
                (Some(route), _) => style.busy(&format!("route not accepted: {}", route.detail)),
                (None, Some(address)) => style.good(&format!("address {address}")),
                (None, None) => style.busy("no address yet"),
            };
            children.push(leaf(format!("Host {} {} — {address}", host.application, host.url)));
        }
        match &env.database {
            Some(db) => {
                let mut details = vec![
                    leaf(format!("Secret {}", db.secret_name.as_deref().unwrap_or("—"))),
                    leaf(format!(
                        "Last rotation {}",
                        match (&db.credentials_rotated_at, &db.rotation_request) {
                            (Some(at), Some(request)) => format!("{at} (request {request})"),
                            _ => "never".to_string(),
                        }
                    )),
                ];
                if let Some(message) = &db.rotation_message {
                    details.push(leaf(style.busy(&format!("Rotation: {message}"))));
                }
                if let Some(host) = &db.host {
                    details.insert(0, leaf(format!("Host {host}")));
                }
                let ready = style.yes_no(db.ready, "ready", "not ready");
                let why = db.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
                children.push(node(format!("Database {} {ready}{why}", db.provider), details));
            }
            None => children.push(leaf("Database none")),
        }
        if let Some(line) = quota_line(&env.quota) {
            children.push(leaf(line));
        }
        top.push(node(format!("Environment {}", style.bold(&env.environment)), children));
    }
    match &view.account {
        Some(account) => {
            let users =
                if account.users.is_empty() { vec![leaf("no users")] } else { account.users.iter().map(|u| user_node(u, style)).collect() };
            top.push(node(
                format!("Account namespace {} ({})", account.namespace, account.state),
                vec![node(format!("Users ({})", account.users.len()), users)],
            ));
        }
        None => top.push(leaf("Account namespace: not created yet")),
    }
    let events = if view.events.is_empty() {
        vec![leaf("none")]
    } else {
        view.events
            .iter()
            .map(|e| {
                let kind = if e.type_ == "Warning" { style.bad(&e.type_) } else { e.type_.clone() };
                leaf(format!("{} {kind} {}: {}", e.time, e.reason, e.note))
            })
            .collect()
    };
    top.push(node("Events (latest)", events));
    draw(&top, "", &mut out);
    out
}

/// The quota entries people look at first, on one line (`-o json` has every entry).
const QUOTA_SHOWN: [&str; 5] = ["pods", "requests.cpu", "requests.memory", "requests.ephemeral-storage", "persistentvolumeclaims"];

fn quota_line(quota: &[super::view::QuotaUse]) -> Option<String> {
    let shown: Vec<String> =
        QUOTA_SHOWN
            .iter()
            .filter_map(|key| quota.iter().find(|q| q.resource == *key))
            .map(|q| {
                if q.used == NOT_COUNTED {
                    format!("{} -/{}", q.resource, q.hard)
                } else {
                    format!("{} {}/{}", q.resource, q.used, q.hard)
                }
            })
            .collect();
    if shown.is_empty() {
        return None;
    }
    let uncounted = if quota.iter().any(|q| q.used == NOT_COUNTED) { " (use not counted yet)" } else { "" };
    Some(format!("Quota used/hard: {}{uncounted}", shown.join(", ")))
}

/// What a quota entry's use reads before the quota controller counted it.
pub const NOT_COUNTED: &str = "not counted yet";

fn user_node(user: &UserView, style: Style) -> Node {
    let role = user.effective_role.as_deref().unwrap_or("no system role");
    let ready = if user.ready {
        style.good("Ready")
    } else {
        style.bad(&format!("not ready ({})", user.problem.as_deref().unwrap_or("no status yet")))
    };
    let bound = if user.bound_namespaces.is_empty() { "nowhere".to_string() } else { user.bound_namespaces.join(", ") };
    leaf(format!("{} <{}> {role}, bound in {bound} — {ready}", user.username, user.email))
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(&cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(&cell);
                text.push_str(&" ".repeat(pad + 3));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// `kubectl tenant list`: one line per tenant.
pub fn list(rows: &[ListRow], now: Timestamp) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.phase.clone(),
                r.ready.clone(),
                r.environments.join(","),
                format!("{}/{}", r.databases_ready, r.databases),
                r.users.to_string(),
                r.created.as_deref().and_then(|c| c.parse::<Timestamp>().ok()).map(|c| age(c, now)).unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    table(&["NAME", "PHASE", "READY", "ENVIRONMENTS", "DATABASES", "USERS", "AGE"], &cells)
}

/// `kubectl tenant users`: a user per line, with their access in each environment.
pub fn users(view: &TenantView) -> String {
    let environments: Vec<String> = view.environments.iter().map(|e| e.environment.clone()).collect();
    let users = view.account.as_ref().map(|a| a.users.as_slice()).unwrap_or_default();
    let mut header = vec!["USERNAME", "EMAIL", "ROLE"];
    let upper: Vec<String> = environments.iter().map(|e| e.to_uppercase()).collect();
    header.extend(upper.iter().map(String::as_str));
    header.push("READY");
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let mut row = vec![u.username.clone(), u.email.clone(), u.effective_role.clone().unwrap_or_else(|| "—".into())];
            row.extend(environments.iter().map(|e| u.access.get(e).cloned().unwrap_or_else(|| "—".into())));
            row.push(if u.ready { "True".into() } else { format!("False ({})", u.problem.as_deref().unwrap_or("no status yet")) });
            row
        })
        .collect();
    table(&header, &rows)
}

/// Age as kubectl shows it: `45s`, `12m`, `5h`, `3d`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_second() - since.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests;

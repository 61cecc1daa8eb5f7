//! The commands of `kubectl tenant`: thin I/O with the user's own client and permissions,
//! around the pure [`super::view`] and [`super::render`].

use std::{collections::BTreeMap, io::Write, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::{core::v1::ResourceQuota, events::v1::Event, networking::v1::Ingress};
use kube::{
    api::{ListParams, Patch, PatchParams},
    Api, Client, ResourceExt,
};
use serde_json::json;

use super::{
    errors::{classify, PluginError, Request},
    render::{self, Style},
    view::{EventView, ListRow, Observed, QuotaUse, RouteView, TenantView},
    Cli, Command, Output,
};
use crate::{
    database::rotation::request_annotation,
    gateway::HTTPRoute,
    types::{DatabaseProvider, Environment, Tenant, TenantPhase, TenantUser},
};

const TENANTS: &str = "tenants.tenancy.platform.dev";
const USERS: &str = "tenantusers.tenancy.platform.dev";
/// Objects per page of `list`: 5,000 tenants are ten requests, not 5,000.
pub const PAGE: u32 = 500;

/// Run one command, writing its output to `out`.
pub async fn run(cli: Cli, client: Client, out: &mut (dyn Write + Send), style: Style) -> Result<(), PluginError> {
    let wait = Duration::from_secs(cli.timeout);
    let written = match cli.command {
        Command::Status { slug, output } => status(&client, &slug, output, style).await?,
        Command::List { output } => list(&client, output).await?,
        Command::Users { slug, output } => users(&client, &slug, output).await?,
        Command::Suspend { slug, no_wait } => set_suspend(&client, &slug, true, (!no_wait).then_some(wait)).await?,
        Command::Resume { slug, no_wait } => set_suspend(&client, &slug, false, (!no_wait).then_some(wait)).await?,
        Command::RotateCredentials { slug, env, no_wait } => rotate(&client, &slug, &env, (!no_wait).then_some(wait)).await?,
    };
    out.write_all(written.as_bytes()).map_err(|e| PluginError::Other(format!("cannot write the output: {e}")))
}

async fn get_tenant(client: &Client, slug: &str) -> Result<Tenant, PluginError> {
    match Api::<Tenant>::all(client.clone()).get(slug).await {
        Ok(tenant) => Ok(tenant),
        Err(e) => Err(explain(client, Request { verb: "get", resource: TENANTS, namespace: None, name: Some(slug) }, e).await),
    }
}

/// A 404 is a missing object, or a cluster without the CRDs: discovery tells which, whatever
/// the server writes in its message.
async fn explain(client: &Client, request: Request<'_>, error: kube::Error) -> PluginError {
    let not_found = matches!(&error, kube::Error::Api(status) if status.code == 404);
    if not_found && !tenants_served(client).await {
        return PluginError::NoCrds;
    }
    classify(request, error)
}

/// Whether the API server serves Tenants (`GET /apis/tenancy.platform.dev/v1alpha1`).
async fn tenants_served(client: &Client) -> bool {
    match client.list_api_group_resources("tenancy.platform.dev/v1alpha1").await {
        Ok(list) => list.resources.iter().any(|r| r.name == "tenants"),
        // Unknown: do not claim the CRDs are missing.
        Err(kube::Error::Api(status)) if status.code == 404 => false,
        Err(_) => true,
    }
}

fn document<T: serde::Serialize>(value: &T, output: Output) -> Result<String, PluginError> {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(value).map(|t| t + "\n").map_err(|e| e.to_string()),
        Output::Yaml => serde_saphyr::to_string(value).map_err(|e| e.to_string()),
        Output::Text => Err("not a document format".to_string()),
    };
    text.map_err(|e| PluginError::Other(format!("cannot format the output: {e}")))
}

/// Everything around the Tenant the status shows. Parts the user may not read are left out
/// (a viewer of Tenants need not read quotas), except the users, which `users` needs.
async fn observe(client: &Client, tenant: &Tenant, need_users: bool) -> Result<Observed, PluginError> {
    let slug = tenant.name_any();
    let account = format!("{slug}-account");
    let users = match Api::<TenantUser>::namespaced(client.clone(), &account).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 && !need_users => Vec::new(),
        Err(e) if need_users => return Err(classify(Request { verb: "list", resource: USERS, namespace: Some(&account), name: None }, e)),
        Err(_) => Vec::new(),
    };
    let mut observed = Observed { users, ..Observed::default() };
    let namespaces: Vec<String> = tenant.status.iter().flat_map(|s| s.namespaces.iter().map(|n| n.name.clone())).collect::<Vec<_>>();
    for namespace in &namespaces {
        if let Ok(list) = Api::<Ingress>::namespaced(client.clone(), namespace).list(&ListParams::default()).await {
            for ingress in list.items {
                let address = ingress
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref()?.first().cloned())
                    .and_then(|lb| lb.ip.or(lb.hostname));
                if let Some(address) = address {
                    observed.addresses.insert((namespace.clone(), ingress.name_any()), address);
                }
            }
        }
        // Regions with `routing: gateway` (no Gateway API on the cluster, or not allowed to
        // read routes: nothing to show).
        if let Ok(list) = Api::<HTTPRoute>::namespaced(client.clone(), namespace).list(&ListParams::default()).await {
            for route in list.items {
                observed.routes.insert((namespace.clone(), route.name_any()), RouteView::of(&route));
            }
        }
        if let Ok(Some(quota)) = Api::<ResourceQuota>::namespaced(client.clone(), namespace).get_opt("tenant-quota").await {
            // Until the quota controller has counted, status is empty: the limits are in spec.
            let status = quota.status.unwrap_or_default();
            let used = status.used.unwrap_or_default();
            let hard = status.hard.filter(|h| !h.is_empty()).or(quota.spec.and_then(|s| s.hard)).unwrap_or_default();
            observed.quotas.insert(
                namespace.clone(),
                hard.into_iter()
                    .map(|(resource, hard)| QuotaUse {
                        used: used.get(&resource).map(|q| q.0.clone()).unwrap_or_else(|| render::NOT_COUNTED.into()),
                        hard: hard.0,
                        resource,
                    })
                    .collect(),
            );
        }
    }
    // Events about a cluster-scoped Tenant are in `default`.
    let selector = format!("regarding.kind=Tenant,regarding.name={slug}");
    if let Ok(list) = Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default().fields(&selector)).await {
        let mut events: Vec<(Timestamp, EventView)> = list
            .items
            .into_iter()
            .map(|e| {
                let time = e
                    .series
                    .as_ref()
                    .map(|s| s.last_observed_time.0)
                    .or(e.event_time.as_ref().map(|t| t.0))
                    .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                    .unwrap_or_default();
                let view = EventView {
                    time: Timestamp::from_second(time.as_second()).unwrap_or(time).to_string(),
                    type_: e.type_.unwrap_or_default(),
                    reason: e.reason.unwrap_or_default(),
                    note: e.note.unwrap_or_default(),
                };
                (time, view)
            })
            .collect();
        events.sort_by_key(|(time, _)| *time);
        observed.events = events.into_iter().map(|(_, view)| view).collect();
    }
    Ok(observed)
}

pub async fn status(client: &Client, slug: &str, output: Output, style: Style) -> Result<String, PluginError> {
    let tenant = get_tenant(client, slug).await?;
    let view = TenantView::build(&tenant, &observe(client, &tenant, false).await?);
    match output {
        Output::Text => Ok(render::tree(&view, style)),
        format => document(&view, format),
    }
}

pub async fn users(client: &Client, slug: &str, output: Output) -> Result<String, PluginError> {
    let tenant = get_tenant(client, slug).await?;
    let view = TenantView::build(&tenant, &observe(client, &tenant, true).await?);
    match output {
        Output::Text => Ok(render::users(&view)),
        format => document(&view.account.map(|a| a.users).unwrap_or_default(), format),
    }
}

/// Every item of a paged list (`limit`/`continue`).
async fn paged<K>(client: &Client, api: Api<K>, resource: &'static str) -> Result<Vec<K>, PluginError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(e) => return Err(explain(client, Request { verb: "list", resource, namespace: None, name: None }, e).await),
        };
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// One paged list of Tenants and one of TenantUsers (counted per tenant), whatever the
/// number of tenants. Without the right to list users cluster-wide the count is left out.
pub async fn list(client: &Client, output: Output) -> Result<String, PluginError> {
    let tenants = paged(client, Api::<Tenant>::all(client.clone()), TENANTS).await?;
    let users = paged(client, Api::<TenantUser>::all(client.clone()), USERS).await.unwrap_or_default();
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    for user in &users {
        // A user belongs to the tenant whose account namespace `<slug>-account` holds it.
        if let Some(slug) = user.namespace().and_then(|ns| ns.strip_suffix("-account").map(str::to_string)) {
            *per_tenant.entry(slug).or_default() += 1;
        }
    }
    let rows: Vec<ListRow> = tenants.iter().map(|t| ListRow::build(t, per_tenant.get(&t.name_any()).copied().unwrap_or(0))).collect();
    match output {
        Output::Text => Ok(render::list(&rows, Timestamp::now())),
        format => document(&rows, format),
    }
}

async fn patch_tenant(client: &Client, slug: &str, patch: serde_json::Value) -> Result<Tenant, PluginError> {
    Api::<Tenant>::all(client.clone())
        .patch(slug, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| classify(Request { verb: "patch", resource: TENANTS, namespace: None, name: Some(slug) }, e))
}

/// Poll the Tenant until `done` says so (or why it never will), for at most `wait`.
async fn wait_for(
    client: &Client,
    slug: &str,
    wait: Duration,
    what: &str,
    done: impl Fn(&Tenant) -> Result<bool, PluginError>,
) -> Result<Tenant, PluginError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let tenant = get_tenant(client, slug).await?;
        if done(&tenant)? {
            return Ok(tenant);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PluginError::TimedOut(format!(
                "Tenant {slug}: {what} did not happen within {}s. Is the operator running? See `kubectl tenant status {slug}`; \
                 wait longer with --timeout",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn set_suspend(client: &Client, slug: &str, suspend: bool, wait: Option<Duration>) -> Result<String, PluginError> {
    get_tenant(client, slug).await?;
    let patched = patch_tenant(client, slug, json!({"spec": {"suspend": suspend}})).await?;
    let generation = patched.metadata.generation;
    let verb = if suspend { "suspended" } else { "resumed" };
    let Some(wait) = wait else { return Ok(format!("Tenant {slug}: spec.suspend set to {suspend}\n")) };
    let tenant = wait_for(client, slug, wait, &format!("being {verb}"), |t| {
        let status = t.status.clone().unwrap_or_default();
        let observed = status.observed_generation >= generation;
        let suspended = status.phase == Some(TenantPhase::Suspended);
        Ok(observed && suspended == suspend)
    })
    .await?;
    let phase = tenant.status.and_then(|s| s.phase).map(|p| p.as_str()).unwrap_or("Pending");
    Ok(format!("Tenant {slug} {verb} (phase {phase})\n"))
}

pub async fn rotate(client: &Client, slug: &str, env: &str, wait: Option<Duration>) -> Result<String, PluginError> {
    let tenant = get_tenant(client, slug).await?;
    let Some(environment) = Environment::parse(env) else {
        return Err(PluginError::Other(format!("{env} is not an environment: use dev, staging or prod")));
    };
    if !tenant.spec.environments.contains(&environment) {
        return Err(PluginError::NotFound {
            what: format!("Environment {env} of Tenant {slug}"),
            fix: format!(
                "The tenant's environments are {}; a removed environment's credentials are retained as they are",
                tenant.spec.environments.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let database = tenant.status.as_ref().and_then(|s| s.databases.iter().find(|d| d.environment == environment)).cloned();
    if database.as_ref().is_none_or(|d| d.provider == DatabaseProvider::None) {
        return Err(PluginError::Refused(format!("Tenant {slug} has no database in {env}: there are no credentials to rotate")));
    }
    let now = Timestamp::now();
    let token = Timestamp::from_second(now.as_second()).unwrap_or(now).to_string();
    patch_tenant(client, slug, json!({"metadata": {"annotations": {request_annotation(environment): token}}})).await?;
    let Some(wait) = wait else {
        return Ok(format!("Requested a rotation of {slug}'s {env} database credentials (request {token})\n"));
    };
    let tenant = wait_for(client, slug, wait, &format!("the rotation {token} of {env}"), |t| {
        let db = t.status.as_ref().and_then(|s| s.databases.iter().find(|d| d.environment == environment));
        if db.and_then(|d| d.rotation_request.as_deref()) == Some(token.as_str()) {
            return Ok(true);
        }
        match db.and_then(|d| d.rotation_message.as_deref()) {
            Some(message) if message.contains("refused") || message.contains("is not a rotation request") => {
                Err(PluginError::Refused(format!("Tenant {slug}: {message}")))
            }
            _ => Ok(false),
        }
    })
    .await?;
    let db = tenant.status.and_then(|s| s.databases.into_iter().find(|d| d.environment == environment));
    let secret = db.as_ref().and_then(|d| d.secret_name.clone()).unwrap_or_default();
    let at = db.and_then(|d| d.credentials_rotated_at).unwrap_or_default();
    Ok(format!(
        "Rotated {slug}'s {env} database credentials at {at}: the new password is in Secret {slug}-{env}/{secret} and the \
         database accepts it\n"
    ))
}

//! `kubectl tenant` on fake API servers of its own, for what only a fake can show: a cluster
//! without the CRDs (on a shared cluster that would mean uninstalling them for everyone), and
//! the requests the plugin makes (the fake records who asked for what). The plugin against the
//! operator, on the fake and on a real control plane, is `e2e_plugin.rs`.

mod support;

use clap::Parser;
use kube::{Api, Client};
use serde_json::json;
use support::fixtures::small_tenant;
use tenant_operator::{
    plugin::{commands, errors::PluginError, render::Style, Cli},
    types::Tenant,
};

async fn kubectl_tenant(client: Client, args: &[&str]) -> Result<String, PluginError> {
    let cli = Cli::try_parse_from(std::iter::once("kubectl-tenant").chain(args.iter().copied())).expect("command line");
    let mut out = Vec::new();
    commands::run(cli, client, &mut out, Style::default()).await?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// A cluster without the CRDs (here a bare fake API server; on a real cluster this would mean
/// uninstalling them for everyone): the plugin says so, with its own exit code.
#[tokio::test]
async fn a_cluster_without_the_crds_is_told_apart() {
    let bare = fake_apiserver::FakeApiServer::builder().without_repo_crds().start().await;
    for args in [&["status", "acme"][..], &["list"][..]] {
        let error = kubectl_tenant(bare.client(), args).await.unwrap_err();
        assert!(matches!(error, PluginError::NoCrds), "{args:?}: {error:?}");
        assert!(error.to_string().contains("CRDs are not installed"), "{error}");
        assert_eq!(error.exit_code(), std::process::ExitCode::from(5));
    }
}

/// `list` on many tenants is one paged list of Tenants (and one of TenantUsers for the user
/// counts), never a request per tenant. On the fake, which records who asked for what.
#[tokio::test]
async fn list_pages_through_many_tenants_without_a_request_per_tenant() {
    const TENANTS: usize = 1_200;
    let fake = fake_apiserver::FakeApiServer::start().await;
    let api = Api::<Tenant>::all(fake.client());
    use futures::StreamExt;
    let created: Vec<_> = futures::stream::iter(0..TENANTS)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&Default::default(), &small_tenant(&format!("many-{i:04}"), json!({}))).await.map(drop) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    created.into_iter().for_each(|r| r.unwrap());
    let lister = fake.client_as_user("lister@platform.example", &["system:masters"]);
    let list = kubectl_tenant(lister, &["list", "-o", "json"]).await.unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.len(), TENANTS);
    let asked: Vec<_> = fake.requests().into_iter().filter(|r| r.user.as_deref() == Some("lister@platform.example")).collect();
    let summary: Vec<String> = asked.iter().map(|r| format!("{} {}", r.verb, r.resource)).collect();
    let pages = TENANTS.div_ceil(commands::PAGE as usize);
    assert_eq!(summary.iter().filter(|s| *s == "list tenants").count(), pages, "{summary:?}");
    assert_eq!(summary.iter().filter(|s| *s == "list tenantusers").count(), 1, "{summary:?}");
    assert_eq!(asked.len(), pages + 1, "nothing per tenant: {summary:?}");
}

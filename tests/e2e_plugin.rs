//! `kubectl tenant` against the operator (fake or real control plane): the same code the
//! `kubectl-tenant` binary runs (`plugin::commands::run` with the parsed command line), with
//! the administrator's client or a person's.

mod support;

use clap::Parser;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::json;
use support::fixtures::{data_tenant, logs_in, ready, small_tenant, test_pg_admin, user, write_postgres_admin_secret};
use support::scenario::Scenario;
use support::stand_ins::CloudNativePgStandIn;
use tenant_operator::{
    database::external::ExternalNames,
    plugin::{commands, errors::PluginError, render::Style, Cli},
    types::{Environment, Tenant, TenantPhase, TenantUser},
};

async fn kubectl_tenant(client: Client, args: &[&str]) -> Result<String, PluginError> {
    let cli = Cli::try_parse_from(std::iter::once("kubectl-tenant").chain(args.iter().copied())).expect("command line");
    let mut out = Vec::new();
    commands::run(cli, client, &mut out, Style::default()).await?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

fn user_ready(u: &TenantUser) -> bool {
    u.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn status_list_and_users_show_what_the_operator_made() {
    let s = Scenario::start().await;
    let slug = s.slug("plug");
    s.create_tenant(&small_tenant(&slug, json!({"environments": ["dev", "prod"]}))).await;
    s.wait_tenant(&slug, ready).await;
    s.create_user(&user("jdoe", &slug, "jane.doe@plug.example", "jdoe", &["Designer"], &[])).await;
    s.wait_user(&slug, "jdoe", user_ready).await;

    let tree = kubectl_tenant(s.client(), &["status", &slug]).await.unwrap();
    assert!(tree.starts_with(&format!("Tenant {slug} (Safe Corp, cluster uk) phase Ready")), "{tree}");
    for expected in [
        format!("Namespace {slug}-dev (Active)"),
        format!("Namespace {slug}-prod (Active)"),
        format!("Host xconsole https://{slug}-dev.xconsole.uk.cloud.example.com/"),
        format!("Host xconsole https://{slug}.xconsole.uk.cloud.example.com/"),
        "Database none".to_string(),
        format!("Account namespace {slug}-account (Active)"),
        "jdoe <jane.doe@plug.example> Designer".to_string(),
        "Quota used/hard: pods ".to_string(),
    ] {
        assert!(tree.contains(&expected), "{expected:?} missing from\n{tree}");
    }
    assert!(!tree.contains('\x1b'), "no colour unless asked");

    let doc: serde_json::Value =
        serde_json::from_str(&kubectl_tenant(s.client(), &["status", &slug, "-o", "json"]).await.unwrap()).unwrap();
    assert_eq!(doc["name"], slug.as_str());
    assert_eq!(doc["phase"], "Ready");
    assert_eq!(doc["account"]["users"][0]["username"], "jdoe");
    let yaml = kubectl_tenant(s.client(), &["status", &slug, "-o", "yaml"]).await.unwrap();
    assert!(yaml.contains(&format!("name: {slug}")), "{yaml}");

    let list = kubectl_tenant(s.client(), &["list"]).await.unwrap();
    let line = list.lines().find(|l| l.starts_with(&format!("{slug} "))).unwrap_or_else(|| panic!("{slug} not listed:\n{list}"));
    assert_eq!(line.split_whitespace().take(6).collect::<Vec<_>>(), [slug.as_str(), "Ready", "True", "dev,prod", "0/0", "1"]);

    let users = kubectl_tenant(s.client(), &["users", &slug]).await.unwrap();
    let row = users.lines().find(|l| l.starts_with("jdoe")).unwrap_or_else(|| panic!("{users}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["jdoe", "jane.doe@plug.example", "Designer", "tenancy:editor", "tenancy:viewer", "True"]
    );
    s.cleanup().await;
}

#[tokio::test]
async fn suspend_and_resume_wait_for_the_operator() {
    let s = Scenario::start().await;
    let slug = s.slug("plugsus");
    s.create_tenant(&small_tenant(&slug, json!({}))).await;
    s.wait_tenant(&slug, ready).await;
    let said = kubectl_tenant(s.client(), &["suspend", &slug]).await.unwrap();
    assert_eq!(said, format!("Tenant {slug} suspended (phase Suspended)\n"));
    let t = Api::<Tenant>::all(s.client()).get(&slug).await.unwrap();
    assert!(t.spec.suspend);
    assert_eq!(t.status.and_then(|s| s.phase), Some(TenantPhase::Suspended), "returned only once status says so");
    let said = kubectl_tenant(s.client(), &["resume", &slug]).await.unwrap();
    assert!(said.starts_with(&format!("Tenant {slug} resumed")), "{said}");
    let t = Api::<Tenant>::all(s.client()).get(&slug).await.unwrap();
    assert_ne!(t.status.and_then(|s| s.phase), Some(TenantPhase::Suspended));
    s.cleanup().await;
}

#[tokio::test]
async fn errors_say_what_is_wrong_and_exit_distinctly() {
    let s = Scenario::start().await;
    let missing = s.slug("nosuch");
    let error = kubectl_tenant(s.client(), &["status", &missing]).await.unwrap_err();
    assert!(matches!(error, PluginError::NotFound { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("Tenant {missing} does not exist. List the tenants with `kubectl tenant list`"));
    assert_eq!(error.exit_code(), std::process::ExitCode::from(3));

    let stranger = s.client_as_person("stranger@elsewhere.example").await;
    let error = kubectl_tenant(stranger, &["suspend", &missing]).await.unwrap_err();
    assert!(matches!(error, PluginError::NotAllowed { .. }), "{error:?}");
    assert!(error.to_string().starts_with("you are not allowed to get tenants.tenancy.platform.dev (cluster-wide)"), "{error}");
    assert_eq!(error.exit_code(), std::process::ExitCode::from(4));

    // A provider that cannot rotate safely: the command stops with the operator's reason.
    let slug = s.slug("plugsts");
    s.create_tenant(&data_tenant(&slug, json!({"database": {"provider": "statefulset"}}))).await;
    s.wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|s| !s.databases.is_empty())).await;
    let error = kubectl_tenant(s.client(), &["rotate-credentials", &slug, "--env", "dev"]).await.unwrap_err();
    assert!(matches!(error, PluginError::Refused(_)) && error.to_string().contains("refused"), "{error}");
    let error = kubectl_tenant(s.client(), &["rotate-credentials", &slug, "--env", "prod"]).await.unwrap_err();
    assert!(matches!(error, PluginError::NotFound { .. }), "{error}");
    s.cleanup().await;
}

async fn password(s: &Scenario, slug: &str) -> String {
    let secret = Api::<Secret>::namespaced(s.client(), &format!("{slug}-dev")).get(&format!("{slug}-db-credentials")).await.unwrap();
    String::from_utf8(secret.data.unwrap_or_default()["password"].0.clone()).unwrap()
}

#[tokio::test]
async fn rotate_credentials_returns_once_the_new_password_logs_in_and_the_old_one_does_not() {
    let Some(admin) = test_pg_admin("e2e_plugin") else { return };
    let _crd = CloudNativePgStandIn::hold_crd_steady().await;
    let s = Scenario::start().await;
    write_postgres_admin_secret(&s.client(), &admin, admin.port).await;
    let slug = s.slug("plugrot");
    s.create_tenant(&data_tenant(&slug, json!({"database": {"provider": "external"}}))).await;
    s.wait_tenant(&slug, ready).await;
    let old = password(&s, &slug).await;
    let said = kubectl_tenant(s.client(), &["rotate-credentials", &slug, "--env", "dev"]).await.unwrap();
    assert!(said.starts_with(&format!("Rotated {slug}'s dev database credentials at ")), "{said}");
    let new = password(&s, &slug).await;
    let names = ExternalNames::new(&slug, Environment::Dev).unwrap();
    assert_ne!(new, old);
    assert!(logs_in(&admin, &names, &new).await, "the new password logs in");
    assert!(!logs_in(&admin, &names, &old).await, "the old one does not");
    s.cleanup().await;
}

/// The README's example: `kubectl tenant status acme` with `examples/` applied shows the
/// namespaces, hostnames, databases and users (the output is printed for the README).
#[tokio::test]
async fn the_example_tenant_at_a_glance() {
    let s = Scenario::start().await;
    let tenant: Tenant = serde_yaml::from_str(&std::fs::read_to_string(support::repo_path("examples/tenant-acme.yaml")).unwrap()).unwrap();
    s.create_tenant(&tenant).await;
    s.wait_for("the account namespace", || async {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(s.client()).get_opt("acme-account").await.ok().flatten().is_some()
    })
    .await;
    let users = std::fs::read_to_string(support::repo_path("examples/users.yaml")).unwrap();
    for document in serde_yaml::Deserializer::from_str(&users) {
        let user: TenantUser = serde::Deserialize::deserialize(document).unwrap();
        s.create_user(&user).await;
    }
    s.mark_statefulsets_ready("acme").await;
    s.wait_tenant("acme", ready).await;
    s.wait_user("acme", "jdoe", user_ready).await;
    let tree = kubectl_tenant(s.client(), &["status", "acme"]).await.unwrap();
    eprintln!("kubectl tenant status acme:\n{tree}");
    for expected in [
        "Tenant acme (Acme Corp, cluster uk) phase Ready",
        "Namespace acme-dev (Active)",
        "Namespace acme-staging (Active)",
        "Namespace acme-prod (Active)",
        "Host xconsole https://acme-dev.xconsole.uk.cloud.example.com/ — address",
        "Host u-assist https://acme.u-assist.uk.cloud.example.com/ — address",
        "Database statefulset ready",
        "Secret acme-db-credentials",
        "Users (3)",
        "jdoe <jane.doe@acme.example>",
        "alee <ann.lee@acme.example>",
    ] {
        assert!(tree.contains(expected), "{expected:?} missing from\n{tree}");
    }
    s.cleanup().await;
}

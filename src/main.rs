use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::{Parser, Subcommand};
use kube::{Client, CustomResourceExt};
use tenant_operator::{
    config::{Config, OperatorIdentity},
    http::{self, HttpState, Readiness},
    kube_version,
    leader::{default_identity, LeaderElection, LeaseConfig, DEFAULT_LEASE_NAME},
    metrics::Metrics,
    operator::{run_controllers, run_with_leader_election, stop_requested, ControllerOptions},
    render::{self, Resources},
    telemetry::{init_tracing, LogFormat},
    types::{Tenant, TenantUser},
};
use tokio::sync::watch;

/// mimalloc, tuned by `allocator::return_freed_memory_promptly` (only the binary: tests and benchmarks keep the
/// system allocator, so the fake API server is measured as it is).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes operator for the tenants of a multi-tenant SaaS platform.
#[derive(Parser)]
#[command(name = "tenant-operator", version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "TENANT_OPERATOR_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the current kubeconfig or in-cluster config.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (or write them into a directory).
    Crd {
        /// Write `tenants.yaml` and `tenantusers.yaml` into this directory instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print, offline, every object the operator would create for Tenants and TenantUsers.
    Render {
        /// Files with Tenant and TenantUser documents (multi-document YAML).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Operator configuration file.
        #[arg(long, default_value = "examples/config.yaml")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Operator configuration file.
    #[arg(long, env = "TENANT_OPERATOR_CONFIG", default_value = "/etc/tenant-operator/config.yaml")]
    config: PathBuf,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Reconciles running at once, per controller.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Run without a Lease (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader election Lease, and of the operator's ServiceAccount.
    #[arg(long, env = "POD_NAMESPACE", default_value = tenant_operator::config::DEFAULT_OPERATOR_NAMESPACE)]
    lease_namespace: String,
    /// The operator's ServiceAccount (the downward API's spec.serviceAccountName): the subject
    /// of the grant it binds in every namespace it creates.
    #[arg(long, env = "SERVICE_ACCOUNT_NAME", default_value = tenant_operator::config::DEFAULT_SERVICE_ACCOUNT)]
    service_account: String,
    /// The ClusterRole the operator binds to itself in every namespace it creates (shipped as
    /// tenant-operator:tenant-namespace; the chart names it after the release).
    #[arg(long, env = "TENANT_NAMESPACE_ROLE", default_value = tenant_operator::config::DEFAULT_NAMESPACE_ROLE)]
    namespace_role: String,
    /// Lease duration in seconds; a standby takes over at most this long after a leader dies.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Run even when the API server is older than the oldest supported Kubernetes (1.30): its
    /// CRD validation is then incomplete.
    #[arg(long, env = kube_version::SKIP_ENV)]
    skip_version_check: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tenant_operator::allocator::return_freed_memory_promptly();
    let cli = Cli::parse();
    if let Err(error) = init_tracing(cli.log_format) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Crd { dir } => crds(dir.as_deref()),
        Command::Render { files, config } => render_files(&files, &config),
        Command::Run(args) => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn crds(dir: Option<&Path>) -> Result<(), BoxError> {
    let tenants = serde_saphyr::to_string(&Tenant::crd())?;
    let users = serde_saphyr::to_string(&TenantUser::crd())?;
    match dir {
        Some(dir) => {
            std::fs::write(dir.join("tenants.yaml"), tenants)?;
            std::fs::write(dir.join("tenantusers.yaml"), users)?;
        }
        None => print!("{tenants}---\n{users}"),
    }
    Ok(())
}

fn render_files(files: &[PathBuf], config: &Path) -> Result<(), BoxError> {
    let config = Config::load(config)?;
    let mut resources = Resources::default();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        resources.add_yaml(&text, &file.display().to_string())?;
    }
    print!("{}", render::to_yaml(&render::render_objects(&resources, &config)?)?);
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(args: RunArgs) -> Result<(), BoxError> {
    let mut config = Config::load(&args.config)?;
    config.operator = OperatorIdentity {
        namespace: args.lease_namespace.clone(),
        service_account: args.service_account.clone(),
        namespace_role: args.namespace_role.clone(),
    };
    let config = Arc::new(config);
    for warning in config.hostname_warnings() {
        tracing::warn!(config = %args.config.display(), "{warning}");
    }
    let client = Client::try_default().await?;
    if args.skip_version_check {
        tracing::warn!("Kubernetes version check skipped");
    } else {
        let info = client.apiserver_version().await.map_err(|e| format!("cannot read the API server's /version: {e}"))?;
        let version = kube_version::check(&info.major, &info.minor, &info.git_version)?;
        tracing::info!(%version, git_version = %info.git_version, "Kubernetes API server");
    }
    let metrics = Metrics::new();
    let readiness = Readiness::new();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = || stop_requested(stop_rx.clone());
    let listener = http::bind(args.http_addr).await?;
    let http_task =
        tokio::spawn(http::serve_listener(listener, HttpState { metrics: metrics.clone(), readiness: readiness.clone() }, stopped()));
    tokio::spawn({
        let readiness = readiness.clone();
        async move {
            termination().await;
            tracing::info!("termination signal received; finishing in-flight reconciles");
            readiness.set_shutting_down();
            let _ = stop_tx.send(true);
        }
    });

    let options = ControllerOptions { concurrency: args.concurrency, metrics: metrics.clone(), readiness: readiness.clone() };
    if args.no_leader_election {
        readiness.set_leader(true);
        metrics.set_leader(true);
        run_controllers(client, config, options, stopped()).await;
    } else {
        let lease = LeaseConfig::new(&args.lease_namespace, DEFAULT_LEASE_NAME, default_identity())
            .with_lease_duration(Duration::from_secs(args.lease_duration));
        let election = LeaderElection::start(client.clone(), lease)?;
        run_with_leader_election(client, config, options, election, stop_rx).await;
    }
    let _ = http_task.await;
    Ok(())
}

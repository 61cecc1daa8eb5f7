//! `kubectl tenant`, the kubectl plugin (binary `kubectl-tenant`): a tenant at a glance, its
//! users, suspend/resume, and credential rotation on request. It acts with the user's own
//! kubeconfig and permissions.
//!
//! | file | concern |
//! |---|---|
//! | `view.rs` | what is shown, as data (pure; also the `-o json|yaml` document) |
//! | `render.rs` | the status tree and the tables (pure) |
//! | `commands.rs` | each command's requests and waits |
//! | `errors.rs` | errors as sentences with the fix, and exit codes |

pub mod commands;
pub mod errors;
pub mod render;
pub mod view;

use clap::{Parser, Subcommand, ValueEnum};

/// Show tenants at a glance, suspend and resume them, rotate their database credentials.
#[derive(Parser, Debug)]
#[command(name = "kubectl-tenant", bin_name = "kubectl tenant", version)]
pub struct Cli {
    /// How long suspend, resume and rotate-credentials wait for the operator, in seconds.
    #[arg(long, default_value_t = 120, global = true)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A tenant as a tree: phase and conditions, each environment's namespace, hostnames,
    /// database and quota, the account's users, the latest Events.
    Status {
        /// The tenant's slug (its metadata.name).
        slug: String,
        /// Output format: text (a tree or table), json or yaml.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Every tenant, one line each (one paged list, whatever their number).
    List {
        /// Output format: text (a tree or table), json or yaml.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// The tenant's users and their access in each environment.
    Users {
        /// The tenant's slug (its metadata.name).
        slug: String,
        /// Output format: text (a tree or table), json or yaml.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Set spec.suspend and wait until the operator reports the tenant suspended.
    Suspend {
        /// The tenant's slug (its metadata.name).
        slug: String,
        /// Return once the request is written, without waiting for the operator.
        #[arg(long)]
        no_wait: bool,
    },
    /// Clear spec.suspend and wait until the operator reconciles the tenant again.
    Resume {
        /// The tenant's slug (its metadata.name).
        slug: String,
        /// Return once the request is written, without waiting for the operator.
        #[arg(long)]
        no_wait: bool,
    },
    /// Ask the operator to rotate an environment's database password, and wait until the new
    /// one is in the credentials Secret and the database accepts it.
    RotateCredentials {
        /// The tenant's slug (its metadata.name).
        slug: String,
        /// dev, staging or prod.
        #[arg(long)]
        env: String,
        /// Return once the request is written, without waiting for the operator.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

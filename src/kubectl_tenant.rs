//! The `kubectl-tenant` binary: `kubectl tenant …` once it is on `PATH` (see
//! `tenant_operator::plugin`).

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
};

use clap::Parser;
use tenant_operator::plugin::{commands, errors::PluginError, render::Style, Cli};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    // Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    let style = Style { color: stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none() };
    let result = match kube::Client::try_default().await {
        Ok(client) => commands::run(cli, client, &mut std::io::stdout(), style).await,
        Err(error) => Err(PluginError::Connection(format!("no usable kubeconfig: {error}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

//! `runnel`: work with topics on a hub, try SmartModules (and, later, connectors on
//! Kubernetes).

mod connector;
mod local;
mod smartmodule;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "Runnel: connectors, topics and SmartModules."
)]
struct Cli {
    /// The hub: local:[PATH] (the default, embedded), kafka://HOST:PORT or nats://HOST:PORT.
    #[arg(long, global = true, env = "RUNNEL_HUB", value_name = "URL")]
    hub: Option<String>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Create, list, delete, produce to and consume from topics.
    #[command(subcommand)]
    Topic(topic::TopicCmd),
    /// Try SmartModules on sample records.
    #[command(subcommand)]
    Smartmodule(smartmodule::SmartModuleCmd),
    /// Create, list, describe, delete and read the logs of connectors on Kubernetes.
    Connector(connector::ConnectorArgs),
    /// Run connectors on this machine in the background, as processes or containers.
    #[command(subcommand)]
    Local(local::LocalCmd),
}

/// The runtime the async commands run on: two workers, as the machines connectors run on.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Commands::Smartmodule(cmd) = cli.command {
        return match smartmodule::run(cmd) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Commands::Local(cmd) = cli.command {
        return local::run(cmd, cli.hub.as_deref()).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        });
    }
    if let Commands::Connector(args) = cli.command {
        return connector::main(args);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Commands::Topic(cmd) => topic::run(cli.hub.as_deref(), cmd).await,
            Commands::Smartmodule(_) | Commands::Local(_) | Commands::Connector(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

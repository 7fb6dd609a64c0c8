//! `runnel-operator`: reconciles Connector resources into Deployments. It finds the cluster
//! as kubectl does (KUBECONFIG, ~/.kube/config, or the in-cluster service account), serves
//! /healthz and /metrics, and stops cleanly on SIGTERM or Ctrl-C.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use clap::Parser;
use runnel_operator::{
    controller::{self, Context},
    metrics::{self, Metrics},
    render::Settings,
};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "runnel-operator",
    version,
    about = "Runs Runnel Connector resources as Deployments."
)]
struct Args {
    /// Connector images are <REGISTRY>/runnel-<type>:<version> unless a Connector names one.
    #[arg(
        long,
        env = "RUNNEL_CONNECTOR_REGISTRY",
        default_value = "ghcr.io/runnel-dev"
    )]
    registry: String,
    /// The hub connectors use unless their spec names one (kafka://, nats://); empty means
    /// each connector's embedded hub.
    #[arg(long, env = "RUNNEL_HUB", default_value = "")]
    hub: String,
    /// Namespaces to watch, comma-separated; empty watches all.
    #[arg(
        long,
        env = "RUNNEL_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    watch_namespaces: Vec<String>,
    /// Address of the /healthz and /metrics server.
    #[arg(long, env = "RUNNEL_OPERATOR_ADDR", default_value = "0.0.0.0:8080")]
    addr: SocketAddr,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot find the cluster (KUBECONFIG, ~/.kube/config or in-cluster): {e}")
    })?;
    let namespaces: Vec<String> = args
        .watch_namespaces
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let settings = Settings {
        registry: args.registry,
        hub: Some(args.hub.trim().to_string()).filter(|h| !h.is_empty()),
        default_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let bound = metrics::serve(args.addr, metrics.clone(), stopped())
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve /healthz and /metrics on {}: {e}", args.addr))?;
    tracing::info!(addr = %bound, namespaces = ?namespaces, registry = %settings.registry, "runnel-operator started; serving /healthz and /metrics.");
    tokio::spawn(async move {
        terminated().await;
        tracing::info!("Stopping.");
        let _ = stop_tx.send(true);
    });
    let ctx = Arc::new(Context::new(client, settings, metrics));
    controller::run(ctx, namespaces, stopped()).await;
    tracing::info!("Stopped.");
    Ok(())
}

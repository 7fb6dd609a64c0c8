//! `runnel connector`: Connector resources on Kubernetes, from connect.yml files.
//!
//! The cluster is found as kubectl finds it (`--kubeconfig`, `KUBECONFIG`,
//! `~/.kube/config`, in-cluster), with the context's namespace unless `-n` says otherwise.
//! Everything goes through the Kubernetes API; nothing shells out to kubectl.
//!
//! - [`convert`]: connect.yml → Connector, pure.
//! - [`ops`]: the subcommands against a `kube::Client` (tests hand them a mock).
//! - [`format`]: tables and ages.

pub mod convert;
pub mod format;
pub mod ops;

use std::{path::PathBuf, process::ExitCode};

use std::io::Write as _;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

#[derive(Args)]
pub struct ConnectorArgs {
    #[command(flatten)]
    cluster: ClusterOpts,
    #[command(subcommand)]
    command: ConnectorCmd,
}

/// Which cluster and namespace, as kubectl's flags of the same names.
#[derive(Args, Clone, Default)]
pub struct ClusterOpts {
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else default).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Subcommand)]
pub enum ConnectorCmd {
    /// Create a Connector from a connect.yml (either Fluvio format), with its secrets.
    ///
    /// Secrets the file declares (meta.secrets, or a flat file's inline secrets) are
    /// written to the Secret <name>-secrets, owned by the Connector, and referenced from it;
    /// their values never appear in the Connector or in any output.
    Create {
        /// The connect.yml.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// KEY=VALUE lines with a value for every declared secret (the connectors' format).
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        /// Replace a Connector of the same name (and its Secret) instead of failing.
        #[arg(long)]
        replace: bool,
        /// Print the Connector as YAML and change nothing (secret keys only, no values).
        #[arg(long)]
        dry_run: bool,
    },
    /// List Connectors: name, type, version, topic, status, age.
    List {
        /// Connectors of every namespace.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Delete Connectors; their Deployments and Secrets go with them (topics stay).
    Delete {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Go on after a failure; exit non-zero at the end if any failed.
        #[arg(long)]
        continue_on_error: bool,
    },
    /// Show a Connector's spec, status, conditions, Deployment and recent events.
    Describe { name: String },
    /// List the connector types this Runnel has: type, direction, grade, Fluvio's names
    /// for it, and what it does (the connector catalogue).
    Types {
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Print the JSON Schema of a connector type's section of connect.yml.
    Schema {
        /// A connector type or one of Fluvio's names for it.
        #[arg(value_name = "TYPE")]
        kind: String,
    },
    /// Print the logs of a Connector's pods.
    Logs {
        name: String,
        /// Keep streaming new lines.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

/// A client with the namespace the commands work in.
pub struct Kube {
    pub client: Client,
    pub namespace: String,
}

/// Connects as kubectl would.
async fn connect(opts: &ClusterOpts) -> Result<Kube> {
    let config = load_config(opts).await?;
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("cannot set up the Kubernetes client")?;
    Ok(Kube { client, namespace })
}

async fn load_config(opts: &ClusterOpts) -> Result<Config> {
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        cluster: None,
        user: None,
    };
    Ok(match (&opts.kubeconfig, &opts.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| format!("cannot use the kubeconfig {}", path.display()))?
        }
        (None, Some(ctx)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use the kubeconfig context {ctx:?}"))?,
        (None, None) => Config::infer()
            .await
            .context("cannot find a Kubernetes cluster (no kubeconfig and not in a cluster); pass --kubeconfig FILE")?,
    })
}

/// Runs a `runnel connector` command: exit 0 on success, 2 for a broken connect.yml or
/// secrets file, 1 for anything else.
pub fn main(args: ConnectorArgs) -> ExitCode {
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if ops::is_input_error(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(args: ConnectorArgs) -> Result<()> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let cluster = args.cluster;
    match args.command {
        ConnectorCmd::Create {
            config,
            secrets,
            replace,
            dry_run,
        } => {
            let input = ops::read_create_input(&config, secrets.as_deref())?;
            for w in &input.converted.warnings {
                eprintln!("warning: {}: {w}", config.display());
            }
            if dry_run {
                // A dry run needs no cluster; it still names the namespace it would use.
                let ns = match &cluster.namespace {
                    Some(ns) => ns.clone(),
                    None => load_config(&cluster)
                        .await
                        .map(|c| c.default_namespace)
                        .unwrap_or_else(|_| "default".into()),
                };
                return ops::print_dry_run(input, &ns, &mut stdout);
            }
            let kube = connect(&cluster).await?;
            ops::create(&kube, input, replace, &mut stdout).await
        }
        ConnectorCmd::List {
            all_namespaces,
            output,
        } => {
            let kube = connect(&cluster).await?;
            ops::list(&kube, all_namespaces, output, &mut stdout, &mut stderr).await
        }
        ConnectorCmd::Delete {
            names,
            continue_on_error,
        } => {
            let kube = connect(&cluster).await?;
            ops::delete(&kube, &names, continue_on_error, &mut stdout, &mut stderr).await
        }
        ConnectorCmd::Describe { name } => {
            let kube = connect(&cluster).await?;
            ops::describe(&kube, &name, &mut stdout).await
        }
        ConnectorCmd::Types { output } => types(output, &mut stdout),
        ConnectorCmd::Schema { kind } => {
            let entry = runnel_catalog::resolve(&kind, None).map_err(ops::InputError)?;
            writeln!(stdout, "{}", serde_json::to_string_pretty(&entry.schema())?)?;
            Ok(())
        }
        ConnectorCmd::Logs { name, follow } => {
            let kube = connect(&cluster).await?;
            ops::logs(&kube, &name, follow, &mut stdout).await
        }
    }
}

/// `runnel connector types`: the catalogue as a table, JSON or YAML.
pub fn types(output: OutputFormat, out: &mut impl std::io::Write) -> Result<()> {
    let catalog = runnel_catalog::CATALOG;
    match output {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(catalog)?)?,
        OutputFormat::Yaml => write!(out, "{}", serde_yaml::to_string(catalog)?)?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = catalog
                .iter()
                .map(|e| {
                    vec![
                        e.kind.to_string(),
                        match e.direction {
                            runnel_catalog::Direction::Source => "source".into(),
                            runnel_catalog::Direction::Sink => "sink".into(),
                        },
                        e.grade.as_str().to_string(),
                        if e.aliases.is_empty() {
                            "-".into()
                        } else {
                            e.aliases.join(",")
                        },
                        e.summary.to_string(),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                format::table(
                    &["TYPE", "DIRECTION", "GRADE", "FLUVIO NAMES", "DESCRIPTION"],
                    &rows
                )
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

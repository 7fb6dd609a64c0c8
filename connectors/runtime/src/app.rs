//! The `main` every connector shares: flags, `--schema`, `--check`, logging, the hub, the
//! health server, signals and the grace period. A connector's `main.rs` only names its
//! [`ConnectorKind`] and passes its protocol.

use std::{
    ffi::OsString, future::Future, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc,
};

use clap::{Args, Command, FromArgMatches};

use crate::{
    BoxError,
    config::{
        self, ConnectorConfig, ConnectorKind, HumanDuration, OffsetStart, OffsetStrategy,
        Overrides, SecretStore, flags,
    },
    hub::{Hub, HubUrl},
    pipeline::{
        self, Deliver, DeliverBatch, SinkContext, SinkRun, SinkSettings, SourceContext,
        SourceSettings,
    },
    server::{self, Health},
    shutdown::{self, Shutdown},
    telemetry::{self, LogFormat, Metrics},
    transform,
};

/// Flags every connector takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The connect.yml to run (both Fluvio formats). Without it, flags alone configure the
    /// connector.
    #[arg(short = 'c', long, env = "RUNNEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A file of KEY=VALUE lines giving values for ${{ secrets.KEY }}; the environment is
    /// read too.
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// Validate the config, print it resolved with secrets masked, and exit (0 valid, 2 not).
    #[arg(long)]
    pub check: bool,
    /// Print the JSON Schema of this connector's options and exit.
    #[arg(long)]
    pub schema: bool,
    /// The connector's name (meta.name).
    #[arg(long)]
    pub name: Option<String>,
    /// The hub topic (meta.topic).
    #[arg(long, alias = "fluvio-topic")]
    pub topic: Option<String>,
    /// Create the topic if it is missing (meta.create-topic).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub create_topic: Option<bool>,
    /// The id a sink stores its offsets under (meta.consumer.id).
    #[arg(long)]
    pub consumer_id: Option<String>,
    /// The hub: local:[PATH] (the default, embedded), kafka://HOST:PORT[,HOST:PORT] or nats://HOST:PORT[,HOST:PORT].
    #[arg(long, env = "RUNNEL_HUB", value_name = "URL")]
    pub hub: Option<String>,
    #[arg(long, env = "RUNNEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the /healthz, /readyz and /metrics server, or "off".
    #[arg(
        long,
        env = "RUNNEL_HEALTH_ADDR",
        default_value = "0.0.0.0:9100",
        value_name = "ADDR"
    )]
    pub health_addr: String,
    /// How long shutdown may take to flush and commit before the process gives up.
    #[arg(long, env = "RUNNEL_GRACE_PERIOD", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: HumanDuration,
    /// Where a source that keeps its position (file-source) saves it; by default a `state`
    /// folder beside the local hub's file.
    #[arg(long, env = "RUNNEL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub smartmodule: transform::SmartModuleArgs,
}

fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    s.parse()
}

/// Flag names the common flags own; a connector field with one of these names gets its
/// section as a prefix (`--mqtt-topic`).
const RESERVED: &[&str] = &[
    "config",
    "secrets",
    "check",
    "schema",
    "name",
    "topic",
    "fluvio-topic",
    "create-topic",
    "consumer-id",
    "hub",
    "log-format",
    "health-addr",
    "grace-period",
    "state-dir",
    "smartmodule-dir",
    "smartmodule-cache",
    "smartmodule-timeout",
    "smartmodule-max-memory",
    "on-transform-error",
    "smartstream-filter",
    "smartstream-map",
    "smartstream-arraymap",
    "help",
    "version",
];

/// A parsed command line with its loaded config.
#[derive(Debug)]
pub struct Prepared<T> {
    pub args: CommonArgs,
    pub config: ConnectorConfig<T>,
    /// The `transforms:` chain, loaded and initialised; `None` without transforms.
    pub chain: Option<smartmodule_host::Chain>,
}

/// Exit code for a config or usage error.
pub const EXIT_CONFIG: u8 = 2;

/// Parses flags and loads the config, handling `--schema` and `--check`. `Err` carries the
/// exit code when the process should stop here.
pub fn prepare<C: ConnectorKind>(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<Prepared<C::Config>, ExitCode> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    // `docker run IMAGE -- --endpoint=...` passes the `--` on to us.
    if argv.get(1).is_some_and(|a| a == "--") {
        argv.remove(1);
    }
    let cmd = CommonArgs::augment_args(Command::new(C::TYPE))
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!(
            "The Runnel {} connector. Options come from --config FILE and from flags; flags win.",
            C::TYPE
        ));
    let schema = config::section_schema::<C>();
    let (cmd, field_flags) =
        flags::add_section_flags(cmd, &schema, C::SECTION, RESERVED, C::FLAG_ALIASES);
    let matches = match cmd.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { 0 }));
        }
    };
    let args = match CommonArgs::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    if args.schema {
        println!(
            "{}",
            serde_json::to_string_pretty(&schema).unwrap_or_default()
        );
        return Err(ExitCode::SUCCESS);
    }
    let store = match &args.secrets {
        Some(p) => match SecretStore::load_file(p) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => SecretStore::from_env(),
    };
    let overrides = Overrides {
        name: args.name.clone(),
        topic: args.topic.clone(),
        create_topic: args.create_topic,
        consumer_id: args.consumer_id.clone(),
        section: flags::section_overrides(&matches, &field_flags),
    };
    let config = match config::load::<C>(args.config.as_deref(), &store, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    // Modules are found, checked and initialised here, so `--check` catches a missing or
    // broken module and a connector never starts half-configured.
    let base = args
        .config
        .as_deref()
        .and_then(|p| p.parent())
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let chain = match transform::resolve(&config.transforms, &args.smartmodule, &base)
        .and_then(|steps| transform::build(&steps, &args.smartmodule))
    {
        Ok(c) => c,
        Err(e) => {
            match &args.config {
                Some(p) => eprintln!(
                    "error: {}: {}",
                    p.display(),
                    config::secrets_masked(&e, config.secret_values())
                ),
                None => eprintln!(
                    "error: {}",
                    config::secrets_masked(&e, config.secret_values())
                ),
            }
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    };
    if args.check {
        print!("{}", config.to_masked_yaml(C::SECTION));
        return Err(ExitCode::SUCCESS);
    }
    Ok(Prepared {
        args,
        config,
        chain,
    })
}

/// What a running connector shares with its stages.
#[derive(Debug, Clone)]
pub struct Services {
    pub hub: Hub,
    /// The hub's address, as given.
    pub url: HubUrl,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
}

/// Connects the hub, checks the topic, starts the health server and signal handling.
pub async fn start<T>(p: &Prepared<T>, kind: &str) -> Result<Services, BoxError> {
    let meta = &p.config.meta;
    let url: HubUrl = match &p.args.hub {
        Some(s) => s.parse()?,
        None => HubUrl::from_env()?,
    };
    let mut hub = Hub::connect(&url).await?;
    hub.set_producer_config(&meta.producer);
    hub.ensure_topic(&meta.topic, meta.create_topic, meta.partitions())
        .await?;
    let metrics = Metrics::new(&meta.name, kind);
    let health = Arc::new(Health::default());
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(shutdown::on_signal(trigger));
    if p.args.health_addr != "off" {
        let addr: SocketAddr = p.args.health_addr.parse().map_err(|_| {
            format!(
                "--health-addr {:?}: expected HOST:PORT or off",
                p.args.health_addr
            )
        })?;
        let (bound, _) = server::serve(addr, health.clone(), metrics.clone(), shutdown.clone())
            .await
            .map_err(|e| format!("cannot serve health and metrics on {addr}: {e} (set --health-addr or RUNNEL_HEALTH_ADDR)"))?;
        tracing::info!(addr = %bound, "Serving /healthz, /readyz and /metrics.");
    }
    tracing::info!(connector = %meta.name, r#type = kind, topic = %meta.topic, hub = %url, "Connector started.");
    Ok(Services {
        hub,
        url,
        health,
        metrics,
        shutdown,
    })
}

/// Runs `fut` to completion; once shutdown fires it gets the grace period to finish.
pub async fn with_grace<F>(
    fut: F,
    shutdown: &Shutdown,
    grace: std::time::Duration,
) -> Result<(), BoxError>
where
    F: Future<Output = Result<(), pipeline::PipelineError>>,
{
    tokio::pin!(fut);
    tokio::select! {
        r = &mut fut => Ok(r?),
        _ = shutdown.wait() => match tokio::time::timeout(grace, &mut fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(format!("shutdown took longer than the grace period ({}); records not yet committed will be delivered again", humantime::format_duration(grace)).into()),
        },
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Runs the connector as a task on the runtime's workers rather than on the main thread,
/// where every wakeup from the I/O driver would cost a cross-thread handoff.
fn on_worker(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = Result<(), BoxError>> + Send + 'static,
) -> Result<(), BoxError> {
    rt.block_on(async move {
        tokio::spawn(fut)
            .await
            .map_err(|e| BoxError::from(format!("the connector task failed: {e}")))?
    })
}

fn finish(result: Result<(), BoxError>) -> ExitCode {
    match result {
        Ok(()) => {
            tracing::info!("Connector stopped.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %crate::Chain(&*e), "Connector failed.");
            ExitCode::FAILURE
        }
    }
}

/// The whole `main` of a source connector.
pub fn source_main<C, F, Fut>(protocol: F) -> ExitCode
where
    C: ConnectorKind,
    F: FnOnce(Arc<ConnectorConfig<C::Config>>, SourceContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let mut p = match prepare::<C>(std::env::args_os()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    telemetry::init_logging(p.args.log_format, p.config.secret_values());
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(e.into())),
    };
    finish(on_worker(&rt, async move {
        let s = start(&p, C::TYPE).await?;
        let mut settings = source_settings(&p.config.meta);
        settings.transforms = p.chain.take().map(|chain| pipeline::SourceTransforms {
            chain,
            on_error: p.args.smartmodule.on_transform_error.into(),
            dead_letter_topic: format!("{}-dlq", p.config.meta.topic),
            connector: p.config.meta.name.clone(),
            secrets: p.config.secret_values().to_vec(),
        });
        if C::KEEPS_POSITION {
            let path = checkpoint_path(p.args.state_dir.as_deref(), &s.url, &p.config.meta.name);
            let store = crate::checkpoint::CheckpointStore::open(path)?;
            tracing::info!(path = %store.path().display(), "Positions are kept in this checkpoint file.");
            settings.checkpoints = Some(Arc::new(store));
        }
        let config = Arc::new(p.config);
        let topic = config.meta.topic.clone();
        let run = pipeline::run_source(
            &s.hub,
            &topic,
            settings,
            s.health.clone(),
            s.metrics.clone(),
            s.shutdown.clone(),
            move |ctx| protocol(config, ctx),
        );
        with_grace(run, &s.shutdown, p.args.grace_period.0).await
    }))
}

/// The checkpoint file of connector `name`: in `--state-dir`, else in a `state` folder
/// beside the local hub's file (beside the default local hub's for Kafka and NATS hubs).
pub fn checkpoint_path(state_dir: Option<&std::path::Path>, hub: &HubUrl, name: &str) -> PathBuf {
    let dir = match (state_dir, hub) {
        (Some(d), _) => d.to_path_buf(),
        (None, HubUrl::Local(db)) => db
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("state"),
        (None, _) => crate::hub::default_local_path()
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("state"),
    };
    dir.join(format!("{name}.checkpoint.json"))
}

/// Producer settings from meta.producer.
pub fn source_settings(meta: &config::Meta) -> SourceSettings {
    let mut s = SourceSettings::default();
    if let Some(l) = meta.producer.linger {
        s.linger = l.0;
    }
    if let Some(b) = meta.producer.batch_size {
        s.batch_bytes = usize::try_from(b.0).unwrap_or(usize::MAX).max(1);
    }
    s
}

/// Sink settings from meta.consumer and the section's delivery options.
pub fn sink_settings<T>(config: &ConnectorConfig<T>) -> SinkSettings {
    let meta = &config.meta;
    let delivery = config.delivery.clone().unwrap_or_default();
    let offset = meta.consumer.offset.clone().unwrap_or_default();
    let store = offset.strategy.unwrap_or_default() != OffsetStrategy::None;
    SinkSettings {
        partition: match meta.consumer.partition {
            Some(config::ConsumerPartition::One(n)) => n,
            _ => 0,
        },
        all_partitions: meta.consumer.partition == Some(config::ConsumerPartition::All),
        consumer_id: store.then(|| meta.consumer_id().to_string()),
        start: offset.start.unwrap_or(OffsetStart::Beginning),
        batch_records: 1000,
        concurrency: delivery.concurrency.max(1),
        retry: delivery.retry,
        on_error: delivery.on_error,
        dead_letter_topic: delivery.dead_letter_topic_for(&meta.topic),
        connector: meta.name.clone(),
        secrets: config.secret_values().to_vec(),
    }
}

/// The whole `main` of a sink connector: `make` builds the protocol side from the config
/// and the sink's context; it delivers one record at a time, concurrently by key.
pub fn sink_main<C, D, F>(make: F) -> ExitCode
where
    C: ConnectorKind,
    D: Deliver,
    F: FnOnce(&ConnectorConfig<C::Config>, &SinkContext) -> Result<D, BoxError> + Send + 'static,
{
    any_sink_main::<C, _, _>(|mut p, s, ctx| async move {
        let deliver = Arc::new(make(&p.config, &ctx)?);
        let chain = p.chain.take();
        let run = sink_run(&p, &s, chain).per_record(deliver);
        with_grace(run, &s.shutdown, p.args.grace_period.0).await
    })
}

/// The whole `main` of a sink that writes whole batches ([`DeliverBatch`]).
pub fn batch_sink_main<C, B, F>(make: F) -> ExitCode
where
    C: ConnectorKind,
    B: DeliverBatch,
    F: FnOnce(&ConnectorConfig<C::Config>, &SinkContext) -> Result<B, BoxError> + Send + 'static,
{
    any_sink_main::<C, _, _>(|mut p, s, ctx| async move {
        let deliver = Arc::new(make(&p.config, &ctx)?);
        let chain = p.chain.take();
        let run = sink_run(&p, &s, chain).batched(deliver);
        with_grace(run, &s.shutdown, p.args.grace_period.0).await
    })
}

fn sink_run<'a, T>(
    p: &'a Prepared<T>,
    s: &'a Services,
    chain: Option<smartmodule_host::Chain>,
) -> SinkRun<'a> {
    SinkRun {
        hub: &s.hub,
        topic: &p.config.meta.topic,
        settings: sink_settings(&p.config),
        chain,
        health: s.health.clone(),
        metrics: s.metrics.clone(),
        shutdown: s.shutdown.clone(),
    }
}

fn any_sink_main<C, F, Fut>(run: F) -> ExitCode
where
    C: ConnectorKind,
    F: FnOnce(Prepared<C::Config>, Services, SinkContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    let p = match prepare::<C>(std::env::args_os()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    telemetry::init_logging(p.args.log_format, p.config.secret_values());
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(e.into())),
    };
    finish(on_worker(&rt, async move {
        let s = start(&p, C::TYPE).await?;
        // The sink says when its outside system is reachable (SinkContext::set_ready).
        let ctx = SinkContext::new(s.health.clone(), s.metrics.clone(), s.shutdown.clone());
        // A sink that says it cannot go on (SinkContext::fail) ends the run with its reason.
        let watch = ctx.clone();
        tokio::select! {
            r = run(p, s, ctx) => r,
            reason = watch.failed() => Err(reason.into()),
        }
    }))
}

//! exec-source: runs `command` every `interval` and writes each line of its output as a
//! record, like Telegraf's exec input. The whole connector is this file: a config struct,
//! its kind, and a protocol loop; flags, `--check`, `--schema`, the hub, health, metrics and
//! shutdown come from Runnel's SDK.

use std::{process::ExitCode, sync::Arc};

use runnel_config::{
    ConnectorConfig, ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate,
};
use runnel_runtime::{BoxError, Record, app, pipeline::SourceContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

struct ExecSource;

impl ConnectorKind for ExecSource {
    const TYPE: &'static str = "exec-source";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "exec";
    const SUMMARY: &'static str = "Runs a command every interval; each line it prints is a record.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    type Config = ExecConfig;
}

/// Options of exec-source (the `exec:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExecConfig {
    /// The program and its arguments (no shell).
    command: Vec<String>,
    /// Time between runs. Default 10s.
    #[serde(default = "ten_seconds")]
    interval: HumanDuration,
}

fn ten_seconds() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}

impl Validate for ExecConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return Err(FieldError::new("command", "must name a program"));
        }
        if self.interval.0.is_zero() {
            return Err(FieldError::new("interval", "must be more than 0"));
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    app::source_main::<ExecSource, _, _>(run)
}

async fn run(config: Arc<ConnectorConfig<ExecConfig>>, ctx: SourceContext) -> Result<(), BoxError> {
    let c = &config.config;
    ctx.health().set_upstream(true);
    let mut tick = tokio::time::interval(c.interval.0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown().wait() => return Ok(()),
        }
        let mut child = tokio::process::Command::new(&c.command[0])
            .args(&c.command[1..])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("exec.command {:?}: {e}", c.command[0]))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await? {
            ctx.send(Record::new(line)).await?;
        }
        let status = child.wait().await?;
        if !status.success() {
            ctx.metrics().records_failed.inc();
            tracing::warn!(%status, "The command failed; its lines were kept, it runs again next interval.");
        }
    }
}

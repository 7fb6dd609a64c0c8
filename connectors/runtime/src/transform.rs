//! The filter and shape stages: a connector's `transforms:` chain (and the older
//! `--smartstream-*` flags) run as one chain of SmartModules by smartmodule-host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use smartmodule_host::{Chain, ChainBuilder, Engine, EngineConfig, Limits, Params};

use crate::config::{HumanDuration, Transform};
use crate::record::Record;
use runnel_core::ErrorPolicy;

/// Flags for the SmartModule stages.
#[derive(Args, Debug, Clone)]
pub struct SmartModuleArgs {
    /// Where `uses: NAME@VERSION` modules are found, as <DIR>/<NAME>@<VERSION>.wasm.
    #[arg(long, env = "RUNNEL_SMARTMODULE_DIR", value_name = "DIR")]
    pub smartmodule_dir: Option<PathBuf>,
    /// Where compiled modules are cached between runs, or "off".
    #[arg(long, env = "RUNNEL_SMARTMODULE_CACHE", value_name = "DIR")]
    pub smartmodule_cache: Option<String>,
    /// How long one call into a SmartModule may run before it is stopped.
    #[arg(long, env = "RUNNEL_SMARTMODULE_TIMEOUT", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub smartmodule_timeout: HumanDuration,
    /// The most linear memory one SmartModule may use, in bytes (suffixes: KiB, MiB, GiB).
    #[arg(long, env = "RUNNEL_SMARTMODULE_MAX_MEMORY", default_value = "256MiB", value_name = "SIZE", value_parser = parse_size)]
    pub smartmodule_max_memory: u64,
    /// A source's policy for records a SmartModule fails on: dead-letter (to
    /// <topic>-dlq), skip (with a log line) or stop. A sink follows its own on_error.
    #[arg(
        long,
        env = "RUNNEL_ON_TRANSFORM_ERROR",
        value_enum,
        default_value = "dead-letter",
        value_name = "POLICY"
    )]
    pub on_transform_error: PolicyArg,
    /// A filter module to run first (Fluvio's older flag).
    #[arg(long, value_name = "WASM")]
    pub smartstream_filter: Option<PathBuf>,
    /// A map module, after the filter (Fluvio's older flag).
    #[arg(long, value_name = "WASM")]
    pub smartstream_map: Option<PathBuf>,
    /// An array_map module, after the map (Fluvio's older flag).
    #[arg(long, value_name = "WASM")]
    pub smartstream_arraymap: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyArg {
    DeadLetter,
    Skip,
    Stop,
}

impl From<PolicyArg> for ErrorPolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::DeadLetter => ErrorPolicy::DeadLetter,
            PolicyArg::Skip => ErrorPolicy::Skip,
            PolicyArg::Stop => ErrorPolicy::Stop,
        }
    }
}

fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    s.parse()
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size: {e}"))
}

/// One module of the chain, resolved to a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Where it came from, for error messages: `transforms[1] (name@1.0)` or a flag.
    pub origin: String,
    pub path: PathBuf,
    pub params: Params,
}

/// Resolves `transforms:` and the `--smartstream-*` flags into module files, in order.
/// Relative paths are taken from `base` (the config file's directory).
pub fn resolve(
    transforms: &[Transform],
    args: &SmartModuleArgs,
    base: &Path,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (i, t) in transforms.iter().enumerate() {
        let origin = format!("transforms[{i}] ({})", t.uses);
        if t.lookback.is_some() {
            return Err(format!(
                "{origin}: lookback is not supported by this runtime; remove it"
            ));
        }
        let path = locate(&t.uses, args, base).map_err(|e| format!("{origin}: {e}"))?;
        let params = t
            .with
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        steps.push(Step {
            origin,
            path,
            params,
        });
    }
    for (flag, path) in [
        ("--smartstream-filter", &args.smartstream_filter),
        ("--smartstream-map", &args.smartstream_map),
        ("--smartstream-arraymap", &args.smartstream_arraymap),
    ] {
        if let Some(path) = path {
            if !path.is_file() {
                return Err(format!("{flag} {}: no such file", path.display()));
            }
            steps.push(Step {
                origin: format!("{flag} {}", path.display()),
                path: path.clone(),
                params: Params::new(),
            });
        }
    }
    Ok(steps)
}

fn locate(uses: &str, args: &SmartModuleArgs, base: &Path) -> Result<PathBuf, String> {
    let as_path = Path::new(uses);
    if uses.ends_with(".wasm") || as_path.is_absolute() || uses.starts_with('.') {
        let path = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            base.join(as_path)
        };
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("no such file: {}", path.display()))
        };
    }
    if uses.contains('@') {
        let dir = args
            .smartmodule_dir
            .clone()
            .or_else(default_module_dir)
            .ok_or("no module directory: set --smartmodule-dir or RUNNEL_SMARTMODULE_DIR")?;
        let path = dir.join(format!("{uses}.wasm"));
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "not found in the module directory: looked for {}",
                path.display()
            ))
        };
    }
    Err("expected a path to a .wasm file or NAME@VERSION".to_string())
}

fn default_module_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".local/share/runnel/smartmodules"))
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("runnel/smartmodules"));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".cache/runnel/smartmodules"))
}

/// Loads and instantiates the chain. `None` when there is nothing to run.
pub fn build(steps: &[Step], args: &SmartModuleArgs) -> Result<Option<Chain>, String> {
    if steps.is_empty() {
        return Ok(None);
    }
    let cache_dir = match args.smartmodule_cache.as_deref() {
        Some("off") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => default_cache_dir(),
    };
    let engine = Engine::new(EngineConfig { cache_dir }).map_err(|e| e.to_string())?;
    let limits = Limits {
        call_timeout: args.smartmodule_timeout.0.max(Duration::from_millis(1)),
        max_memory: args.smartmodule_max_memory,
    };
    let mut builder = ChainBuilder::new(&engine, limits);
    for step in steps {
        let module = engine
            .load_file(&step.path)
            .map_err(|e| format!("{}: {e}", step.origin))?;
        builder.add(module, step.params.clone());
    }
    builder.build().map(Some).map_err(|e| e.to_string())
}

/// A record a module rejected: the input it came from (when known) and why.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub source: Option<usize>,
    pub record: Record,
    pub reason: String,
}

/// Runs CPU-bound module calls so that a slow module (up to its time limit) does not hold
/// up the other tasks queued on this worker: on a multi-threaded runtime they move to
/// another worker meanwhile.
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs `chain` over `records`. Outputs keep the headers of the input they came from;
/// rejected records come back whole (the input itself when known) with the reason.
pub fn apply(
    chain: &mut Chain,
    records: &[Record],
) -> (Vec<(Option<usize>, Record)>, Vec<Rejection>) {
    let processed = run_blocking(|| chain.process(records));
    let out = processed
        .records
        .into_iter()
        .map(|p| {
            let headers = p
                .source
                .and_then(|i| records.get(i))
                .map(|r| r.headers.clone())
                .unwrap_or_default();
            (
                p.source,
                Record {
                    key: p.key,
                    value: p.value,
                    timestamp: p.timestamp,
                    headers,
                },
            )
        })
        .collect();
    let rejected = processed
        .rejected
        .into_iter()
        .map(|r| Rejection {
            source: r.source,
            record: r
                .source
                .and_then(|i| records.get(i).cloned())
                .unwrap_or_else(|| Record {
                    key: r.key,
                    value: r.value,
                    timestamp: crate::record::now_millis(),
                    headers: Vec::new(),
                }),
            reason: r.reason.to_string(),
        })
        .collect();
    (out, rejected)
}

/// The dead-letter copy of a record a module rejected on its way into the hub.
pub fn dead_letter(r: &Rejection, connector: &str, secrets: &[String]) -> Record {
    let mut rec = r.record.clone();
    for (k, v) in [
        (
            "runnel-error",
            crate::config::secrets_masked(&r.reason, secrets),
        ),
        ("runnel-stage", "transform".to_string()),
        ("runnel-connector", connector.to_string()),
    ] {
        rec.headers.push((k.to_string(), Bytes::from(v)));
    }
    rec
}

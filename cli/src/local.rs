//! `runnel local`: connectors on this machine, as background processes or containers.
//!
//! Each connector started here has a record in the local index, a directory holding
//! `NAME.json` (what was started, and how) and `NAME.log` (its output, for processes). The
//! status shown by `list` is never stored: it is checked live, against the process (by pid
//! and start time, so a reused pid is not mistaken for ours) or the container engine.

use std::{
    fs::{self, File},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use runnel_runtime::{config, hub::HubUrl};
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum LocalCmd {
    /// Start a connector from its connect.yml in the background.
    Start(StartArgs),
    /// List the local connectors with their live status.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
    /// Stop connectors: SIGTERM, then SIGKILL when the grace period is over.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
        /// How long a connector gets to flush and commit before it is killed.
        #[arg(short = 't', long, default_value = "20s", value_name = "DURATION")]
        timeout: humantime::Duration,
    },
    /// Print a connector's log.
    Logs {
        name: String,
        /// Keep printing new lines until interrupted or the connector exits.
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Args)]
pub struct StartArgs {
    /// The connect.yml to run; its meta.type picks the connector.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: PathBuf,
    /// A file of KEY=VALUE lines giving values for ${{ secrets.KEY }}.
    #[arg(long, value_name = "FILE")]
    secrets: Option<PathBuf>,
    /// The name to run it under (default: the connect.yml's meta.name).
    #[arg(long)]
    name: Option<String>,
    /// Run the connector's container image with docker or podman instead of the binary.
    #[arg(long)]
    container: bool,
    /// Registry of the connector images (with --container).
    #[arg(
        long,
        env = "RUNNEL_IMAGE_REGISTRY",
        default_value = "ghcr.io/runnel-dev",
        value_name = "REGISTRY"
    )]
    registry: String,
    /// The image to run (with --container), instead of the connect.yml's image: or
    /// REGISTRY/runnel-TYPE:VERSION.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// More flags for the connector, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    extra: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Exit code for a config or usage error, as the connectors use.
const EXIT_CONFIG: u8 = 2;

/// Where `--config` and `--secrets` appear inside a container.
const CONTAINER_CONFIG_DIR: &str = "/runnel/config";
const CONTAINER_SECRETS: &str = "/runnel/secrets";

pub fn run(cmd: LocalCmd, hub: Option<&str>) -> Result<ExitCode> {
    let index = Index::open()?;
    match cmd {
        LocalCmd::Start(args) => start(&index, args, hub),
        LocalCmd::List { output } => list(&index, output),
        LocalCmd::Stop { names, timeout } => stop(&index, &names, timeout.into()),
        LocalCmd::Logs { name, follow } => logs(&index, &name, follow),
    }
}

// ---------------------------------------------------------------------------------------
// The index

/// What `start` recorded about one connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    /// meta.version of the connect.yml, when it gave one.
    version: Option<String>,
    topic: String,
    mode: Mode,
    /// The connector process (process mode).
    pid: Option<u32>,
    /// The process's start time in clock ticks after boot (/proc/PID/stat), to tell our
    /// process from a later one that got the same pid.
    proc_start: Option<u64>,
    /// Seconds since the Unix epoch.
    started_at: u64,
    stopped_at: Option<u64>,
    /// The exit code, when `start` saw the process end.
    exit_code: Option<i32>,
    config: PathBuf,
    secrets: Option<PathBuf>,
    log: Option<PathBuf>,
    health_addr: Option<String>,
    /// docker or podman (container mode).
    engine: Option<String>,
    container: Option<String>,
    image: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Process,
    Container,
}

struct Index {
    dir: PathBuf,
}

impl Index {
    /// `$RUNNEL_HOME/local`, else `$XDG_STATE_HOME/runnel/local`, else
    /// `~/.local/state/runnel/local`.
    fn open() -> Result<Index> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let base = if let Some(h) = var("RUNNEL_HOME") {
            PathBuf::from(h)
        } else if let Some(s) = var("XDG_STATE_HOME") {
            PathBuf::from(s).join("runnel")
        } else if let Some(h) = var("HOME") {
            PathBuf::from(h).join(".local/state/runnel")
        } else {
            bail!("cannot place the local index: set RUNNEL_HOME or HOME");
        };
        Ok(Index {
            dir: base.join("local"),
        })
    }

    fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the local index {}", self.dir.display()))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn get(&self, name: &str) -> Result<Option<Entry>> {
        let path = self.record_path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{}: not a record of a local connector", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("cannot read {}", path.display()))),
        }
    }

    /// Looks `name` up; an unknown name is an error that says what is known.
    fn require(&self, name: &str) -> Result<Entry> {
        if check_name(name).is_ok()
            && let Some(e) = self.get(name)?
        {
            return Ok(e);
        }
        bail!("no local connector named {name:?} (runnel local list shows them)")
    }

    fn all(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let dir = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(anyhow!(e).context(format!("cannot read {}", self.dir.display()))),
        };
        for item in dir {
            let path = item?.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Some(name) = path.file_stem().and_then(|s| s.to_str())
                && check_name(name).is_ok()
                && let Some(e) = self.get(name)?
            {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes the record atomically: a reader sees the old one or the new one, never half.
    fn save(&self, e: &Entry) -> Result<()> {
        self.create()?;
        let path = self.record_path(&e.name);
        let tmp = self
            .dir
            .join(format!(".{}.json.{}.tmp", e.name, std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(e).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|err| {
            let _ = fs::remove_file(&tmp);
            anyhow!(err).context(format!("cannot write {}", path.display()))
        })
    }
}

/// A name is a file name in the index and part of a container name: keep it plain.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid connector name {name:?}: use up to 63 letters, digits, '-', '_' and '.', starting with a letter or digit"
        ))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Status

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Exited(Option<i32>),
    Stopped,
    /// The container is gone (removed outside runnel).
    Missing,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Exited(_) => "exited",
            Status::Stopped => "stopped",
            Status::Missing => "missing",
        }
    }

    fn text(self) -> String {
        match self {
            Status::Exited(Some(code)) => format!("exited ({code})"),
            s => s.word().to_string(),
        }
    }
}

/// The state field and start time of a live process, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 (starttime); `fields` starts at field 3.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is still the process we started.
fn process_alive(pid: u32, proc_start: Option<u64>) -> bool {
    if Path::new("/proc/self/stat").exists() {
        return match proc_stat(pid) {
            Some((state, start)) => {
                !matches!(state, 'Z' | 'X') && proc_start.is_none_or(|s| s == start)
            }
            None => false,
        };
    }
    // Without /proc, all we can ask is whether the pid exists.
    i32::try_from(pid).is_ok_and(|p| kill(Pid::from_raw(p), None).is_ok())
}

fn status(e: &Entry) -> (Status, Option<u32>) {
    match e.mode {
        Mode::Process => {
            let pid = e.pid.unwrap_or(0);
            if pid != 0 && process_alive(pid, e.proc_start) {
                (Status::Running, Some(pid))
            } else if e.stopped_at.is_some() {
                (Status::Stopped, None)
            } else {
                (Status::Exited(e.exit_code), None)
            }
        }
        Mode::Container => {
            let (engine, name) = match (&e.engine, &e.container) {
                (Some(en), Some(c)) => (en.as_str(), c.as_str()),
                _ => return (Status::Missing, None),
            };
            match inspect(engine, name) {
                Some(s) if s.running => (Status::Running, s.pid),
                Some(_) if e.stopped_at.is_some() => (Status::Stopped, None),
                Some(s) => (Status::Exited(s.exit_code), None),
                None if e.stopped_at.is_some() => (Status::Stopped, None),
                None => (Status::Missing, None),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// start

fn start(index: &Index, args: StartArgs, hub: Option<&str>) -> Result<ExitCode> {
    if args.image.is_some() && !args.container {
        eprintln!("error: --image needs --container");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    // A type outside the catalogue is a connector built outside this repository: it runs
    // when its binary is found where Runnel's own are looked for.
    let resolve = |name: &str, direction| {
        runnel_catalog::canonical(name, direction).or_else(|e| {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            match plain && !args.container && connector_binary(name).is_ok() {
                true => Ok(name.to_string()),
                false => Err(format!(
                    "{e}; nor is there a connector binary of that name in $RUNNEL_CONNECTOR_DIR, beside runnel or on PATH"
                )),
            }
        })
    };
    let meta = match config::read_meta(&args.config, &resolve) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if let Some(s) = &args.secrets
        && !s.is_file()
    {
        eprintln!("error: --secrets {}: no such file", s.display());
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let name = args.name.clone().unwrap_or_else(|| meta.name.clone());
    if let Err(msg) = check_name(&name) {
        let hint = if args.name.is_some() {
            ""
        } else {
            " (from meta.name; give another with --name)"
        };
        eprintln!("error: {msg}{hint}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if let Some(old) = index.get(&name)? {
        let (st, pid) = status(&old);
        if st == Status::Running {
            let what = match pid {
                Some(p) => format!(" (pid {p})"),
                None => String::new(),
            };
            bail!(
                "a local connector named {name:?} is already running{what}: stop it first (runnel local stop {name}) or pick another --name"
            );
        }
    }
    let config_abs = absolute(&args.config)?;
    let secrets_abs = args.secrets.as_deref().map(absolute).transpose()?;
    let mut entry = Entry {
        name: name.clone(),
        kind: meta.kind.clone(),
        version: meta.version.clone(),
        topic: meta.topic.clone(),
        mode: Mode::Process,
        pid: None,
        proc_start: None,
        started_at: now(),
        stopped_at: None,
        exit_code: None,
        config: config_abs.clone(),
        secrets: secrets_abs.clone(),
        log: None,
        health_addr: None,
        engine: None,
        container: None,
        image: None,
    };
    // Two connectors on one machine cannot share the default health port: give each its own
    // unless the user chose.
    let chose_health = std::env::var_os("RUNNEL_HEALTH_ADDR").is_some()
        || args.extra.iter().any(|a| a.starts_with("--health-addr"));
    let health = (!chose_health).then(free_local_addr).flatten();
    entry.health_addr = health.clone();

    // The connector's own flags, the same for its check and its run.
    let connector_args = |config: &Path, secrets: Option<&Path>| -> Vec<String> {
        let mut v = vec!["--config".to_string(), config.display().to_string()];
        if let Some(s) = secrets {
            v.extend(["--secrets".to_string(), s.display().to_string()]);
        }
        if let Some(n) = &args.name {
            v.extend(["--name".to_string(), n.clone()]);
        }
        if let Some(h) = &health {
            v.extend(["--health-addr".to_string(), h.clone()]);
        }
        v.extend(args.extra.iter().cloned());
        v
    };

    if args.container {
        return start_container(index, &args, hub, entry, &meta, connector_args);
    }

    let bin = connector_binary(&meta.kind)?;
    // The connector checks its whole config (its own section, secrets, transforms) and
    // reports errors exactly as it would when run by hand.
    let mut check = Command::new(&bin);
    check
        .args(connector_args(&args.config, args.secrets.as_deref()))
        .arg("--check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(h) = hub {
        check.env("RUNNEL_HUB", h);
    }
    let out = check
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        std::io::stderr().write_all(&out.stderr)?;
        let code = out.status.code().unwrap_or(1);
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }

    index.create()?;
    let log_path = index.log_path(&name);
    let log = File::create(&log_path)
        .with_context(|| format!("cannot create the log {}", log_path.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.args(connector_args(&config_abs, secrets_abs.as_deref()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal is not for the connector, and it
        // keeps running after this command exits.
        .process_group(0);
    if let Some(h) = hub {
        cmd.env("RUNNEL_HUB", h);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    entry.pid = Some(pid);
    entry.proc_start = proc_stat(pid).map(|(_, s)| s);
    entry.log = Some(log_path.clone());
    index.save(&entry)?;

    // Wait a moment for the connector to come up, so a hub or topic error shows here
    // rather than later in `list`.
    let deadline = Instant::now() + Duration::from_secs(3);
    let exited = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline
            || fs::read_to_string(&log_path).is_ok_and(|l| l.contains("Connector started."))
        {
            break None;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    match exited {
        None => {
            let health = entry
                .health_addr
                .as_deref()
                .map(|h| format!(", health on http://{h}"))
                .unwrap_or_default();
            println!("started {name} ({}, pid {pid}{health})", meta.kind);
            Ok(ExitCode::SUCCESS)
        }
        Some(st) => {
            entry.exit_code = st.code();
            index.save(&entry)?;
            if st.success() {
                println!("started {name} ({}); it has already finished", meta.kind);
                return Ok(ExitCode::SUCCESS);
            }
            let tail = last_lines(&log_path, 10);
            bail!(
                "{name} exited at once ({}); the end of its log:\n{tail}",
                st.code()
                    .map(|c| format!("code {c}"))
                    .unwrap_or_else(|| "killed".into())
            )
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p)
        .with_context(|| format!("{}: cannot make the path absolute", p.display()))
}

/// A 127.0.0.1 port free right now, for a connector's health server.
fn free_local_addr() -> Option<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(l.local_addr().ok()?.to_string())
}

/// The connector binary for `kind`: in `$RUNNEL_CONNECTOR_DIR`, else beside this `runnel`,
/// else on PATH.
fn connector_binary(kind: &str) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("RUNNEL_CONNECTOR_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|d| d.join(kind))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            anyhow!(
                "the {kind} connector binary is not in $RUNNEL_CONNECTOR_DIR, beside runnel or on PATH (build it: cargo build --release --locked --workspace --bins; or run its image with --container)"
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Containers

/// docker or podman: `$RUNNEL_CONTAINER_ENGINE`, else docker when its daemon answers, else
/// podman.
fn container_engine() -> Result<String> {
    if let Some(e) = std::env::var("RUNNEL_CONTAINER_ENGINE")
        .ok()
        .filter(|e| !e.is_empty())
    {
        return Ok(e);
    }
    let on_path = |b: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(b))))
    };
    let docker = on_path("docker");
    let podman = on_path("podman");
    // A docker client without a reachable daemon is common; podman needs no daemon.
    if docker
        && (!podman
            || Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()))
    {
        return Ok("docker".into());
    }
    if podman {
        return Ok("podman".into());
    }
    bail!("--container needs docker or podman on PATH (or RUNNEL_CONTAINER_ENGINE)")
}

struct Inspected {
    running: bool,
    exit_code: Option<i32>,
    pid: Option<u32>,
}

fn inspect(engine: &str, container: &str) -> Option<Inspected> {
    let out = Command::new(engine)
        .args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}",
            container,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let running = f.next()? == "true";
    let exit_code = f.next().and_then(|c| c.parse().ok());
    let pid = f.next().and_then(|p| p.parse().ok()).filter(|p| *p != 0);
    Some(Inspected {
        running,
        exit_code,
        pid,
    })
}

fn start_container(
    index: &Index,
    args: &StartArgs,
    hub: Option<&str>,
    mut entry: Entry,
    meta: &config::Meta,
    connector_args: impl Fn(&Path, Option<&Path>) -> Vec<String>,
) -> Result<ExitCode> {
    let engine = container_engine()?;
    // --image, else the connect.yml's own image: (Fluvio's key), else Runnel's image.
    let image = args
        .image
        .clone()
        .or_else(|| meta.image.clone())
        .unwrap_or_else(|| {
            format!(
                "{}/runnel-{}:{}",
                args.registry.trim_end_matches('/'),
                meta.kind,
                env!("CARGO_PKG_VERSION")
            )
        });
    let container = format!("runnel-{}", entry.name);

    // The config's directory is mounted, so transforms given as relative .wasm paths work.
    let config_dir = entry
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let file_name = entry
        .config
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "connect.yml".into());
    let inner_config = PathBuf::from(CONTAINER_CONFIG_DIR).join(&file_name);
    let mut run_opts: Vec<String> = vec![
        "--network".into(),
        "host".into(),
        "-v".into(),
        format!("{}:{CONTAINER_CONFIG_DIR}:ro", config_dir.display()),
    ];
    if let Some(s) = &entry.secrets {
        run_opts.extend([
            "-v".into(),
            format!("{}:{CONTAINER_SECRETS}:ro", s.display()),
        ]);
    }
    // Secrets from the environment go by name only: the engine reads the value from its own
    // environment, so it never appears on a command line.
    for s in &meta.secrets {
        if std::env::var_os(s).is_some() {
            run_opts.extend(["-e".into(), s.clone()]);
        }
    }
    for v in ["RUST_LOG", "RUNNEL_LOG_FORMAT", "RUNNEL_GRACE_PERIOD"] {
        if std::env::var_os(v).is_some() {
            run_opts.extend(["-e".into(), v.into()]);
        }
    }
    let url = match hub {
        Some(h) => h.parse::<HubUrl>()?,
        None => HubUrl::from_env()?,
    };
    match &url {
        HubUrl::Local(path) => {
            // The hub's directory is mounted at the same path, and the connector runs as this
            // user, so the host and the container share the database file.
            let path = absolute(path)?;
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the hub directory {}", dir.display()))?;
            run_opts.extend([
                "-v".into(),
                format!("{}:{}", dir.display(), dir.display()),
                "-e".into(),
                format!("RUNNEL_HUB=local:{}", path.display()),
                "--user".into(),
                format!(
                    "{}:{}",
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw()
                ),
            ]);
            if engine.ends_with("podman") && !nix::unistd::getuid().is_root() {
                run_opts.push("--userns=keep-id".into());
            }
        }
        other => run_opts.extend(["-e".into(), format!("RUNNEL_HUB={other}")]),
    }
    let inner_secrets = entry
        .secrets
        .as_ref()
        .map(|_| PathBuf::from(CONTAINER_SECRETS));
    let cargs = connector_args(&inner_config, inner_secrets.as_deref());

    // The image checks the whole config first, as the binary does in process mode; its
    // errors name the file as the user gave it.
    let out = Command::new(&engine)
        .args(["run", "--rm"])
        .args(&run_opts)
        .arg(&image)
        .args(&cargs)
        .arg("--check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {engine}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).replace(
            &inner_config.display().to_string(),
            &args.config.display().to_string(),
        );
        eprint!("{text}");
        if out.status.code() == Some(i32::from(EXIT_CONFIG)) {
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        bail!("{engine} could not run {image}");
    }

    // A finished container of the same name is in the way; a running one was refused above.
    let _ = Command::new(&engine)
        .args(["rm", "-f", &container])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let out = Command::new(&engine)
        .args(["run", "-d", "--name", &container])
        .args(["--label", &format!("dev.runnel.local={}", entry.name)])
        .args(&run_opts)
        .arg(&image)
        .args(&cargs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {engine}"))?;
    if !out.status.success() {
        bail!(
            "{engine} run {image} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    entry.mode = Mode::Container;
    entry.engine = Some(engine.clone());
    entry.container = Some(container.clone());
    entry.image = Some(image.clone());
    index.save(&entry)?;
    println!(
        "started {} ({}, container {container} from {image})",
        entry.name, entry.kind
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// list, stop, logs

fn list(index: &Index, output: ListFormat) -> Result<ExitCode> {
    let entries = index.all()?;
    let now = now();
    let rows: Vec<(Entry, Status, Option<u32>)> = entries
        .into_iter()
        .map(|e| {
            let (s, pid) = status(&e);
            (e, s, pid)
        })
        .collect();
    match output {
        ListFormat::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(e, s, pid)| {
                    serde_json::json!({
                        "name": e.name,
                        "type": e.kind,
                        "version": e.version,
                        "topic": e.topic,
                        "mode": e.mode,
                        "status": s.word(),
                        "exit_code": match s { Status::Exited(c) => *c, _ => None },
                        "pid": pid,
                        "started_at": humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(e.started_at)).to_string(),
                        "age_seconds": now.saturating_sub(e.started_at),
                        "config": e.config,
                        "log": e.log,
                        "health_addr": e.health_addr,
                        "container": e.container,
                        "image": e.image,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        ListFormat::Table => {
            let mut table = vec![[
                "NAME".to_string(),
                "TYPE".into(),
                "TOPIC".into(),
                "STATUS".into(),
                "PID".into(),
                "AGE".into(),
            ]];
            for (e, s, pid) in &rows {
                table.push([
                    e.name.clone(),
                    e.kind.clone(),
                    e.topic.clone(),
                    s.text(),
                    pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    age(now.saturating_sub(e.started_at)),
                ]);
            }
            let widths: Vec<usize> = (0..6)
                .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            let mut out = std::io::stdout().lock();
            for row in &table {
                let line: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("  ").trim_end())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn stop(index: &Index, names: &[String], timeout: Duration) -> Result<ExitCode> {
    let mut failed = false;
    for name in names {
        if let Err(e) = stop_one(index, name, timeout) {
            eprintln!("error: {e:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn stop_one(index: &Index, name: &str, timeout: Duration) -> Result<()> {
    let mut e = index.require(name)?;
    let (st, _) = status(&e);
    if st != Status::Running {
        if st != Status::Stopped {
            e.stopped_at = Some(now());
            index.save(&e)?;
        }
        println!("{name} was not running ({})", st.text());
        return Ok(());
    }
    match e.mode {
        Mode::Process => {
            let pid = e.pid.unwrap_or(0);
            let target = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
            kill(target, Signal::SIGTERM)
                .with_context(|| format!("cannot signal {name} (pid {pid})"))?;
            let deadline = Instant::now() + timeout;
            let mut killed = false;
            while process_alive(pid, e.proc_start) {
                if Instant::now() >= deadline {
                    let _ = kill(target, Signal::SIGKILL);
                    killed = true;
                    let hard = Instant::now() + Duration::from_secs(5);
                    while process_alive(pid, e.proc_start) && Instant::now() < hard {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            e.stopped_at = Some(now());
            index.save(&e)?;
            if killed {
                println!(
                    "stopped {name}: killed after {} without exiting",
                    humantime::format_duration(timeout)
                );
            } else {
                println!("stopped {name}");
            }
        }
        Mode::Container => {
            let (engine, container) = container_of(&e)?;
            let secs = timeout.as_secs().max(1).to_string();
            let out = Command::new(engine)
                .args(["stop", "-t", &secs, container])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .with_context(|| format!("cannot run {engine}"))?;
            if !out.status.success() {
                bail!(
                    "{engine} stop {container} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            e.stopped_at = Some(now());
            index.save(&e)?;
            println!("stopped {name}");
        }
    }
    Ok(())
}

fn container_of(e: &Entry) -> Result<(&str, &str)> {
    match (&e.engine, &e.container) {
        (Some(en), Some(c)) => Ok((en, c)),
        _ => bail!("{}: the record names no container", e.name),
    }
}

fn logs(index: &Index, name: &str, follow: bool) -> Result<ExitCode> {
    let e = index.require(name)?;
    if e.mode == Mode::Container {
        let (engine, container) = container_of(&e)?;
        let mut cmd = Command::new(engine);
        cmd.arg("logs");
        if follow {
            cmd.arg("-f");
        }
        let st = cmd
            .arg(container)
            .status()
            .with_context(|| format!("cannot run {engine}"))?;
        return Ok(if st.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let path = e.log.clone().unwrap_or_else(|| index.log_path(name));
    let mut f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut pos = 0u64;
    loop {
        // Read what is there; a connector may be writing meanwhile.
        f.seek(SeekFrom::Start(pos))?;
        buf.clear();
        f.read_to_end(&mut buf)?;
        pos += buf.len() as u64;
        out.write_all(&buf)?;
        out.flush()?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        let alive = e.pid.is_some_and(|p| process_alive(p, e.proc_start));
        if !alive {
            // One last read for what it wrote while exiting.
            f.seek(SeekFrom::Start(pos))?;
            buf.clear();
            f.read_to_end(&mut buf)?;
            out.write_all(&buf)?;
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(check_name("my-source_1.a").is_ok());
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let (_, start) = proc_stat(me).unwrap();
        assert!(process_alive(me, Some(start)));
        assert!(!process_alive(me, Some(start + 1)));
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(10_000), "2h");
        assert_eq!(age(900_000), "10d");
    }
}

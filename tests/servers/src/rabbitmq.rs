//! RabbitMQ for the rabbitmq connector tests: a broker of its own on 127.0.0.1 (its node
//! name, ports, epmd, data and logs in a temporary directory), started from apt's
//! `rabbitmq-server` as SERVERS.md describes. It takes 10 to 14 s to start, so a test binary
//! shares one ([`RabbitMq::shared`], started once, in the background as soon as it is first
//! asked for) and isolates its tests by queue and exchange names; a test that restarts the
//! broker starts its own.
//!
//! Both the broker and its epmd run under a small shell watchdog that stops them (SIGTERM,
//! then waits) when the test process is gone, so a shared broker held by a `static` does not
//! outlive its test binary, and epmd, which Erlang would otherwise leave behind, is stopped
//! by its PID.

use std::{
    net::TcpStream,
    path::Path,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{Proc, free_port};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// Runs `cmd` under a watchdog shell: SIGTERM to the shell, or the end of the test process,
/// stops `cmd` with SIGTERM and waits for it.
fn watched(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            r#"parent=$1; shift
"$@" & child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.2; done
kill -TERM $child 2>/dev/null; wait $child"#,
        )
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(program)
        .args(args);
    cmd
}

/// Stops a watched process: SIGTERM to its watchdog, which stops the process and waits.
fn stop(p: &mut Proc, what: &str) {
    p.terminate();
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{what} did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct RabbitMq {
    pub port: u16,
    dist_port: u16,
    epmd_port: u16,
    node: String,
    dir: tempfile::TempDir,
    epmd: Option<Proc>,
    server: Option<Proc>,
    starts: usize,
}

impl RabbitMq {
    /// A broker of its own, ready for connections.
    pub fn start() -> RabbitMq {
        assert!(
            Path::new(SERVER).is_file(),
            "rabbitmq-server is not installed (apt-get install -y --no-install-recommends rabbitmq-server, or scripts/test-deps)"
        );
        let dir = tempfile::tempdir().unwrap();
        let epmd_port = free_port();
        let mut r = RabbitMq {
            port: free_port(),
            dist_port: free_port(),
            epmd_port,
            node: format!("runnel{epmd_port}@localhost"),
            dir,
            epmd: None,
            server: None,
            starts: 0,
        };
        let d = r.dir.path();
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{}\nlog.console = false\n",
                r.port
            ),
        )
        .unwrap();
        let port = r.epmd_port.to_string();
        let epmd = Proc::spawn(
            watched("epmd", &["-address", "127.0.0.1", "-port", &port]),
            d.join("epmd.log"),
        );
        wait_for(r.epmd_port, Duration::from_secs(10), || epmd.output());
        r.epmd = Some(epmd);
        r.run();
        r
    }

    /// The broker this test binary shares, started at the first call.
    pub fn shared() -> &'static RabbitMq {
        static SHARED: OnceLock<RabbitMq> = OnceLock::new();
        SHARED.get_or_init(RabbitMq::start)
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let mut cmd = watched(SERVER, &[]);
        let env = [
            ("HOME", d.join("home").display().to_string()),
            ("RABBITMQ_NODENAME", self.node.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("ERL_EPMD_PORT", self.epmd_port.to_string()),
            (
                "RABBITMQ_MNESIA_BASE",
                d.join("mnesia").display().to_string(),
            ),
            ("RABBITMQ_LOG_BASE", d.join("log").display().to_string()),
            (
                "RABBITMQ_PID_FILE",
                d.join("rabbit.pid").display().to_string(),
            ),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                d.join("enabled_plugins").display().to_string(),
            ),
            (
                "RABBITMQ_CONFIG_FILE",
                d.join("rabbitmq.conf").display().to_string(),
            ),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
            (
                "RABBITMQ_CTL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
        ];
        cmd.envs(env);
        self.starts += 1;
        let p = Proc::spawn(cmd, d.join(format!("server-{}.log", self.starts)));
        wait_for(self.port, Duration::from_secs(90), || p.output());
        self.server = Some(p);
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker (as an orderly restart does); its queues and their messages stay on
    /// disk.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.server.take() {
            stop(&mut p, "rabbitmq-server");
        }
    }

    /// Starts it again after [`RabbitMq::stop`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the broker is running");
        self.run();
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut e) = self.epmd.take() {
            stop(&mut e, "epmd");
        }
    }
}

fn wait_for(port: u16, within: Duration, output: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port}:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

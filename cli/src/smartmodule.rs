//! `runnel smartmodule test`: run a module, or a chain of them, on sample records, for
//! module authors.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use smartmodule_host::{ChainBuilder, Engine, EngineConfig, Limits, Params, RecordView};

#[derive(Subcommand)]
pub enum SmartModuleCmd {
    /// Run SmartModules on records (one per input line) and print what comes out.
    Test(TestArgs),
}

#[derive(Args)]
pub struct TestArgs {
    /// A .wasm module; repeat to run a chain, in the order given.
    #[arg(long, required = true, value_name = "FILE")]
    wasm: Vec<PathBuf>,
    /// A parameter for the modules' init, as KEY=VALUE; repeatable.
    #[arg(short = 'e', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Records, one per line, from FILE or - for standard input (the default).
    #[arg(short, long, value_name = "FILE|-")]
    input: Option<String>,
    /// A record given on the command line instead of --input; repeatable.
    #[arg(long, value_name = "VALUE")]
    text: Vec<String>,
    /// Split each input line into KEY<SEP>VALUE, and print keys the same way.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// How long one call into a module may run.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The most linear memory a module may use, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    max_memory_mib: u64,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

struct Line {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
}

impl RecordView for Line {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
    fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

pub fn run(cmd: SmartModuleCmd) -> anyhow::Result<bool> {
    let SmartModuleCmd::Test(args) = cmd;
    let engine = Engine::new(EngineConfig::default())?;
    let limits = Limits {
        call_timeout: args.timeout,
        max_memory: args.max_memory_mib << 20,
    };
    let params: Params = args.params.iter().cloned().collect();
    let mut builder = ChainBuilder::new(&engine, limits);
    for path in &args.wasm {
        builder.add(engine.load_file(path)?, params.clone());
    }
    let mut chain = builder.build()?;
    let now = runnel_runtime::record::now_millis();
    let split = |line: &[u8]| -> Line {
        let (key, value) = match &args.key_separator {
            Some(sep) if !sep.is_empty() => match find(line, sep.as_bytes()) {
                Some(i) => (Some(line[..i].to_vec()), line[i + sep.len()..].to_vec()),
                None => (None, line.to_vec()),
            },
            _ => (None, line.to_vec()),
        };
        Line {
            key,
            value,
            timestamp: now,
        }
    };
    let records: Vec<Line> = if !args.text.is_empty() {
        if args.input.is_some() {
            bail!("give either --text or --input, not both");
        }
        args.text.iter().map(|t| split(t.as_bytes())).collect()
    } else {
        let reader: Box<dyn BufRead> = match args.input.as_deref() {
            None | Some("-") => Box::new(std::io::stdin().lock()),
            Some(path) => Box::new(std::io::BufReader::new(
                std::fs::File::open(path).with_context(|| path.to_string())?,
            )),
        };
        let mut out = Vec::new();
        for line in reader.split(b'\n') {
            let mut line = line?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push(split(&line));
        }
        out
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut ok = true;
    for (n, batch) in records.chunks(1000).enumerate() {
        let p = chain.process(batch);
        for r in &p.records {
            if let (Some(k), Some(sep)) = (&r.key, &args.key_separator) {
                w.write_all(k)?;
                w.write_all(sep.as_bytes())?;
            }
            w.write_all(&r.value)?;
            w.write_all(b"\n")?;
        }
        for r in &p.rejected {
            ok = false;
            let at = r
                .source
                .map(|i| format!("record {}", n * 1000 + i + 1))
                .unwrap_or_else(|| "a record".into());
            eprintln!("rejected {at}: {}", r.reason);
        }
    }
    w.flush()?;
    Ok(ok)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

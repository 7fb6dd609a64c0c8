//! `runnel topic`: the hub's topics from the command line.

use std::{
    io::{BufRead, Write},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use runnel_runtime::{
    Record,
    config::OffsetStart,
    hub::{Hub, HubUrl},
};

#[derive(Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (the local hub has one per topic).
        #[arg(short, long, default_value_t = 1)]
        partitions: u32,
        /// Succeed when the topic already exists.
        #[arg(long)]
        ignore_existing: bool,
    },
    /// List topics with their record counts.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
        output: ListFormat,
    },
    /// Delete topics and their records.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Write each line of stdin as a record.
    Produce {
        name: String,
        /// Split each line at the first SEP into key and value (`key=value` with `=`).
        #[arg(long, value_name = "SEP")]
        key_separator: Option<String>,
    },
    /// Print records of a topic.
    Consume {
        name: String,
        /// Start at the first record.
        #[arg(short = 'B', long)]
        beginning: bool,
        /// Start at this offset; negative counts back from the end (--offset=-10).
        #[arg(long, allow_hyphen_values = true, conflicts_with = "beginning")]
        offset: Option<i64>,
        /// Exit at the end of the topic instead of waiting for more.
        #[arg(short = 'd', long)]
        disable_continuous: bool,
        /// Stop after this many records.
        #[arg(short = 'n', long)]
        max_records: Option<u64>,
        /// Print keys too (text output).
        #[arg(short = 'k', long)]
        key_value: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// The value, one record per line.
    Text,
    /// One JSON object per line: offset, timestamp, key, value, headers.
    Json,
}

async fn connect(hub: Option<&str>) -> Result<Hub> {
    let url: HubUrl = match hub {
        Some(s) => s.parse()?,
        None => HubUrl::from_env()?,
    };
    Hub::connect(&url)
        .await
        .with_context(|| format!("cannot open the hub {url}"))
}

pub async fn run(hub: Option<&str>, cmd: TopicCmd) -> Result<()> {
    let hub = connect(hub).await?;
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            ignore_existing,
        } => match hub.create_topic(&name, partitions).await {
            Ok(()) => println!("topic \"{name}\" created"),
            Err(runnel_runtime::hub::HubError::TopicExists(_)) if ignore_existing => {
                println!("topic \"{name}\" already exists")
            }
            Err(e) => return Err(e.into()),
        },
        TopicCmd::List { output } => {
            let topics = hub.list_topics().await?;
            match output {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&topics)?),
                ListFormat::Table => {
                    let w = topics
                        .iter()
                        .map(|t| t.name.len())
                        .max()
                        .unwrap_or(0)
                        .max(4);
                    println!("{:<w$}  {:>10}  {:>10}", "NAME", "PARTITIONS", "RECORDS");
                    for t in &topics {
                        println!("{:<w$}  {:>10}  {:>10}", t.name, t.partitions, t.records);
                    }
                }
            }
        }
        TopicCmd::Delete { names } => {
            for n in names {
                hub.delete_topic(&n).await?;
                println!("topic \"{n}\" deleted");
            }
        }
        TopicCmd::Produce {
            name,
            key_separator,
        } => produce(&hub, &name, key_separator).await?,
        TopicCmd::Consume {
            name,
            beginning,
            offset,
            disable_continuous,
            max_records,
            key_value,
            output,
        } => {
            let start = match (beginning, offset) {
                (true, _) => OffsetStart::Beginning,
                (_, Some(o)) => OffsetStart::Absolute(o),
                _ => OffsetStart::End,
            };
            consume(
                &hub,
                &name,
                start,
                disable_continuous,
                max_records,
                key_value,
                output,
            )
            .await?
        }
    }
    Ok(())
}

async fn produce(hub: &Hub, topic: &str, sep: Option<String>) -> Result<()> {
    let mut producer = hub.producer(topic).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Record>(8192);
    // stdin is blocking; a thread reads it so batches form while the hub writes.
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line?;
            let record = match sep.as_deref().and_then(|s| line.split_once(s)) {
                Some((k, v)) => Record::new(v.to_string()).with_key(k.to_string()),
                None => Record::new(line),
            };
            if tx.blocking_send(record).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut batch = Vec::with_capacity(4096);
    let mut total = 0u64;
    while rx.recv_many(&mut batch, 4096).await > 0 {
        total += batch.len() as u64;
        producer.send(std::mem::take(&mut batch)).await?;
    }
    match reader.join() {
        Ok(r) => r.context("reading stdin")?,
        Err(_) => bail!("the stdin reader failed"),
    }
    eprintln!("produced {total} record(s) to \"{topic}\"");
    Ok(())
}

async fn consume(
    hub: &Hub,
    topic: &str,
    start: OffsetStart,
    exit_at_end: bool,
    max: Option<u64>,
    key_value: bool,
    output: OutputFormat,
) -> Result<()> {
    let mut consumer = hub.consumer(topic, 0, None, start).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let wait = if exit_at_end {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    };
    loop {
        let batch = consumer.fetch(8192, wait).await?;
        if batch.is_empty() {
            if exit_at_end {
                break;
            }
            continue;
        }
        for r in &batch {
            match output {
                OutputFormat::Text => {
                    if key_value {
                        out.write_all(b"[")?;
                        out.write_all(r.record.key.as_deref().unwrap_or(b"null"))?;
                        out.write_all(b"] ")?;
                    }
                    out.write_all(&r.record.value)?;
                    out.write_all(b"\n")?;
                }
                OutputFormat::Json => {
                    let v = serde_json::json!({
                        "offset": r.offset,
                        "timestamp": r.record.timestamp,
                        "key": r.record.key.as_deref().map(text),
                        "value": text(&r.record.value),
                        "headers": r.record.headers.iter().map(|(k, v)| (k.clone(), text(v))).collect::<serde_json::Map<_, _>>(),
                    });
                    serde_json::to_writer(&mut out, &v)?;
                    out.write_all(b"\n")?;
                }
            }
            printed += 1;
            if max.is_some_and(|m| printed >= m) {
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

/// Bytes as a JSON string: the text when it is UTF-8, else `hex:` and the bytes in hex.
fn text(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => s.into(),
        Err(_) => {
            let mut s = String::with_capacity(4 + b.len() * 2);
            s.push_str("hex:");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s.into()
        }
    }
}

//! sql-source: polls a table or query for rows past the last one read and hands each on as
//! a JSON object (PostgreSQL renders it with `row_to_json`, so every type is shown the way
//! the database shows it in JSON; SQLite's values are mapped here). Rows are read in order
//! of the position columns, a batch per query; the last row's column values are the
//! position, saved in the checkpoint once the hub has the row. A lost connection is made
//! again with backoff and reading goes on from the position in memory, so nothing is read
//! twice; a table, column or login the database refuses stops the connector (exit 1).

mod postgres;
mod sqlite;

use std::{process::ExitCode, sync::Arc, time::Duration};

use runnel_core::retry::Backoff;
use runnel_runtime::{
    BoxError, Record, app, config::ConnectorConfig, pipeline::Closed, pipeline::SourceContext,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sql_source::{Database, Mode, SqlSource, SqlSourceConfig, Start};

/// The checkpoint key of the position.
const KEY: &str = "rows";

/// The last row read, as the checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// What it is a position in (mode and source), so a changed config starts over.
    of: String,
    incrementing: Option<Value>,
    timestamp: Option<Value>,
}

/// One row read: its JSON object, its position columns and its key.
#[derive(Debug)]
pub struct Row {
    pub value: String,
    pub incrementing: Option<Value>,
    pub timestamp: Option<Value>,
    pub key: Option<String>,
}

/// Why reading stopped.
#[derive(Debug)]
pub enum Failure {
    /// The connection or the database's state: connect again with backoff.
    Lost(String),
    /// The database refused what it was asked (a table, a column, a login): stop.
    Fatal(String),
    /// The connector is stopping.
    Stopping,
}

impl From<Closed> for Failure {
    fn from(_: Closed) -> Self {
        Failure::Stopping
    }
}

/// What a query asks for, whichever the database.
pub struct Plan {
    pub mode: Mode,
    pub source: String,
    pub incrementing: Option<String>,
    pub timestamp: Option<String>,
    pub key: Option<String>,
    pub limit: u32,
    pub delay: Duration,
}

impl Plan {
    fn of(c: &SqlSourceConfig) -> Plan {
        Plan {
            mode: c.mode(),
            source: c.source(),
            incrementing: c.incrementing_column.clone(),
            timestamp: c.timestamp_column.clone(),
            key: c.key_column.clone(),
            limit: c.batch_rows,
            delay: c.timestamp_delay.0,
        }
    }

    /// The position columns, in the order rows are read.
    pub fn order(&self) -> Vec<&str> {
        self.timestamp
            .iter()
            .chain(self.incrementing.iter())
            .map(String::as_str)
            .collect()
    }

    /// A statement that selects the position columns (NULL for a column not used), for
    /// the database to check that they exist and to say their types.
    pub fn probe(&self) -> String {
        let q = |c: &Option<String>| match c {
            Some(c) => format!("q.{c}"),
            None => "NULL".into(),
        };
        format!(
            "SELECT {}, {} FROM ({}) AS q LIMIT 0",
            q(&self.incrementing),
            q(&self.timestamp),
            self.source
        )
    }

    /// Each query's SQL, from the select list and FROM clause, how a database writes
    /// parameter N of a column (`$1::text::int8`, `?1`), and its test of a timestamp old
    /// enough (`timestamp_delay`).
    pub fn sqls(
        &self,
        select: &str,
        param: impl Fn(usize, Column) -> String,
        old_enough: Option<String>,
    ) -> Sqls {
        let mut known: Vec<String> = self
            .order()
            .iter()
            .map(|c| format!("q.{c} IS NOT NULL"))
            .collect();
        known.extend(old_enough);
        let inc = self.incrementing.as_deref().unwrap_or_default();
        let ts = self.timestamp.as_deref().unwrap_or_default();
        let past = match self.mode {
            Mode::Bulk => "true".to_string(),
            Mode::Incrementing => format!("q.{inc} > {}", param(1, Column::Incrementing)),
            Mode::Timestamp => format!("q.{ts} > {}", param(1, Column::Timestamp)),
            Mode::TimestampIncrementing => format!(
                "(q.{ts}, q.{inc}) > ({}, {})",
                param(1, Column::Timestamp),
                param(2, Column::Incrementing)
            ),
        };
        let filter = |extra: Option<&str>| {
            let mut all = known.clone();
            all.extend(extra.map(str::to_string));
            if all.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", all.join(" AND "))
            }
        };
        let order: Vec<String> = self.order().iter().map(|c| format!("q.{c}")).collect();
        let desc: Vec<String> = order.iter().map(|c| format!("{c} DESC")).collect();
        let order = order.join(", ");
        let limit = self.limit;
        Sqls {
            first: format!("{select}{} ORDER BY {order} LIMIT {limit}", filter(None)),
            next: format!(
                "{select}{} ORDER BY {order} LIMIT {limit}",
                filter(Some(&past))
            ),
            group: format!("{select} WHERE q.{ts} = {}", param(1, Column::Timestamp)),
            last: format!(
                "{select}{} ORDER BY {} LIMIT 1",
                filter(None),
                desc.join(", ")
            ),
            bulk: select.to_string(),
        }
    }
}

/// A position column.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    Incrementing,
    Timestamp,
}

/// The SQL of each query: rows from the first, rows past a position, the rows at one
/// timestamp, the last row there is, every row.
pub struct Sqls {
    pub first: String,
    pub next: String,
    pub group: String,
    pub last: String,
    pub bulk: String,
}

/// Rows handed on: all but the last at once, the last with the position after it.
#[derive(Clone)]
pub struct Out {
    ctx: SourceContext,
    of: String,
}

impl Out {
    fn record(r: Row) -> Record {
        let record = Record::new(r.value);
        match r.key {
            Some(k) => record.with_key(k),
            None => record,
        }
    }

    /// Hands rows on with no position (bulk, or rows of a group before its last).
    pub async fn some(&self, rows: Vec<Row>) -> Result<(), Closed> {
        self.ctx
            .send_many(rows.into_iter().map(Out::record).collect())
            .await
    }

    /// Hands rows on, the position after the last one saved once the hub has it.
    pub async fn ending(&self, mut rows: Vec<Row>) -> Result<Option<Position>, Closed> {
        let Some(last) = rows.pop() else {
            return Ok(None);
        };
        self.some(rows).await?;
        let position = Position {
            of: self.of.clone(),
            incrementing: last.incrementing.clone(),
            timestamp: last.timestamp.clone(),
        };
        let value = runnel_runtime::checkpoint::position(&position);
        self.ctx.send_at(Out::record(last), KEY, value).await?;
        Ok(Some(position))
    }
}

enum Reader {
    Postgres(Box<postgres::Reader>),
    Sqlite(sqlite::Reader),
}

impl Reader {
    async fn open(c: &SqlSourceConfig, plan: &Arc<Plan>) -> Result<Reader, Failure> {
        Ok(
            match c.database().map_err(|e| Failure::Fatal(e.to_string()))? {
                Database::Postgres(url) => Reader::Postgres(Box::new(
                    postgres::Reader::open(&url, c.connect_timeout.0, plan.clone()).await?,
                )),
                Database::Sqlite(path) => {
                    Reader::Sqlite(sqlite::Reader::open(&path, plan.clone()).await?)
                }
            },
        )
    }

    /// Up to `plan.limit` rows past `after`, in order.
    async fn next(&mut self, after: Option<&Position>) -> Result<Vec<Row>, Failure> {
        match self {
            Reader::Postgres(r) => r.next(after).await,
            Reader::Sqlite(r) => r.next(after).await,
        }
    }

    /// Every row whose timestamp is `ts`, handed on; the position after the last.
    async fn group(&mut self, ts: &Value, out: &Out) -> Result<Option<Position>, Failure> {
        match self {
            Reader::Postgres(r) => r.group(ts, out).await,
            Reader::Sqlite(r) => r.group(ts, out).await,
        }
    }

    /// Every row, handed on without a position.
    async fn bulk(&mut self, out: &Out) -> Result<(), Failure> {
        match self {
            Reader::Postgres(r) => r.bulk(out).await,
            Reader::Sqlite(r) => r.bulk(out).await,
        }
    }

    /// The position of the last row there is now.
    async fn last(&mut self) -> Result<Option<Row>, Failure> {
        match self {
            Reader::Postgres(r) => r.last().await,
            Reader::Sqlite(r) => r.last().await,
        }
    }

    fn shown(&self) -> &str {
        match self {
            Reader::Postgres(r) => r.shown(),
            Reader::Sqlite(r) => r.shown(),
        }
    }
}

/// One poll: whether it stopped at the batch limit (so more may be waiting at once).
async fn poll(
    reader: &mut Reader,
    plan: &Plan,
    out: &Out,
    at: &mut Option<Position>,
) -> Result<bool, Failure> {
    if plan.mode == Mode::Bulk {
        reader.bulk(out).await?;
        return Ok(false);
    }
    let mut rows = reader.next(at.as_ref()).await?;
    let full = rows.len() as u64 >= u64::from(plan.limit);
    if plan.mode == Mode::Timestamp && full {
        // Rows sharing the last timestamp may go on past the limit: they are read in the
        // next poll, all together, since a position between them cannot be given.
        let last = rows.last().and_then(|r| r.timestamp.clone());
        match rows.iter().rposition(|r| r.timestamp != last) {
            Some(i) => rows.truncate(i + 1),
            None => {
                if let Some(ts) = last
                    && let Some(p) = reader.group(&ts, out).await?
                {
                    *at = Some(p);
                }
                return Ok(true);
            }
        }
    }
    if let Some(p) = out.ending(rows).await? {
        *at = Some(p);
    }
    Ok(full)
}

async fn run(
    config: Arc<ConnectorConfig<SqlSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let c = &config.config;
    let plan = Arc::new(Plan::of(c));
    let of = format!("{:?} {}", plan.mode, plan.source);
    let mut at: Option<Position> = None;
    if plan.mode != Mode::Bulk
        && let Some(saved) = ctx.checkpoints().and_then(|s| s.get::<Position>(KEY))
    {
        if saved.of == of {
            tracing::info!(incrementing = ?saved.incrementing, timestamp = ?saved.timestamp, "Reading on after the saved position.");
            at = Some(saved);
        } else {
            tracing::warn!(saved_for = %saved.of, "The saved position is of another table, query or mode; starting over as `start` says.");
        }
    }
    let mut fresh = at.is_none();
    let out = Out {
        ctx: ctx.clone(),
        of: of.clone(),
    };
    let mut backoff = Backoff::new(c.initial_backoff.0, c.max_backoff.0);
    let mut logged = false;
    let mut reader: Option<Reader> = None;
    loop {
        if ctx.shutdown().is_triggered() {
            return Ok(());
        }
        let r = match reader.as_mut() {
            Some(r) => r,
            None => {
                let opened = tokio::select! {
                    biased;
                    _ = ctx.shutdown().wait() => return Ok(()),
                    r = Reader::open(c, &plan) => r,
                };
                match opened {
                    Ok(r) => {
                        tracing::info!(database = %r.shown(), mode = ?plan.mode, "Reading rows.");
                        ctx.health().set_upstream(true);
                        backoff.reset();
                        logged = false;
                        reader.insert(r)
                    }
                    Err(Failure::Stopping) => return Ok(()),
                    Err(Failure::Fatal(why)) => return Err(why.into()),
                    Err(Failure::Lost(why)) => {
                        ctx.health().set_upstream(false);
                        let wait = backoff.next_delay();
                        if !logged {
                            tracing::warn!(error = %why, retry_in_ms = wait.as_millis() as u64, "Cannot reach the database; connecting again with backoff.");
                            logged = true;
                        }
                        tokio::select! {
                            _ = ctx.shutdown().wait() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                        continue;
                    }
                }
            }
        };
        if fresh && c.start == Start::End && plan.mode != Mode::Bulk {
            match r.last().await {
                Ok(last) => {
                    if let Some(last) = last {
                        let p = Position {
                            of: of.clone(),
                            incrementing: last.incrementing,
                            timestamp: last.timestamp,
                        };
                        tracing::info!(incrementing = ?p.incrementing, timestamp = ?p.timestamp, "Starting after the last row there is (start: end).");
                        ctx.save_at(KEY, runnel_runtime::checkpoint::position(&p))
                            .await?;
                        at = Some(p);
                    }
                }
                Err(e) => {
                    if let Some(done) = failed(e, &mut reader, &ctx) {
                        return done;
                    }
                    continue;
                }
            }
        }
        fresh = false;
        let r = reader.as_mut().expect("open");
        match poll(r, &plan, &out, &mut at).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                if let Some(done) = failed(e, &mut reader, &ctx) {
                    return done;
                }
                continue;
            }
        }
        tokio::select! {
            _ = ctx.shutdown().wait() => return Ok(()),
            _ = tokio::time::sleep(c.poll_interval.0) => {}
        }
    }
}

/// After a failed poll: the result to stop with, or `None` to connect again.
fn failed(
    e: Failure,
    reader: &mut Option<Reader>,
    ctx: &SourceContext,
) -> Option<Result<(), BoxError>> {
    match e {
        Failure::Stopping => Some(Ok(())),
        Failure::Fatal(why) => Some(Err(why.into())),
        Failure::Lost(why) => {
            tracing::warn!(error = %why, "Lost the database; connecting again and reading on from the last row read.");
            ctx.health().set_upstream(false);
            *reader = None;
            None
        }
    }
}

fn main() -> ExitCode {
    app::source_main::<SqlSource, _, _>(run)
}

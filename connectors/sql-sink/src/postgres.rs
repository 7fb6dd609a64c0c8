//! PostgreSQL through tokio-postgres. Each value goes as text with a cast to its model
//! type (`$2::int4`; bytes as bytea), so the database converts it into its column the way
//! an INSERT of that type would; values were checked before (model::check).

use std::{collections::HashMap, sync::Arc, time::Duration};

use runnel_runtime::pipeline::{DeliveryError, SinkContext};
use sql_common::pg::{describe, refused, transient};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement, types::Type as PgType};

use crate::{
    Outcome,
    model::{Checked, MARKS_TABLE, Mark, Place, Row, Type},
};

const MARK_SQL: &str = "INSERT INTO runnel_offsets (consumer, topic, partition, next_offset) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, topic, partition) \
     DO UPDATE SET next_offset = EXCLUDED.next_offset";

/// How often an idle connection is checked (and made again when lost).
const KEEP_EVERY: Duration = Duration::from_secs(2);

struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

pub struct Postgres {
    config: tokio_postgres::Config,
    /// Where it writes, for log lines: user@host:port/db, never the password.
    shown: String,
    conn: Arc<Mutex<Option<Conn>>>,
    ctx: SinkContext,
}

/// The cast a value of `t` is written with.
fn cast(t: Type) -> &'static str {
    match t {
        Type::Bool => "::bool",
        Type::Char | Type::SmallInt => "::int2",
        Type::Int => "::int4",
        Type::BigInt => "::int8",
        Type::Float => "::float4",
        Type::DoublePrecision => "::float8",
        Type::Text | Type::Bytes => "",
        Type::Numeric => "::numeric",
        Type::Timestamp => "::timestamp",
        Type::Date => "::date",
        Type::Time => "::time",
        Type::Uuid => "::uuid",
        Type::Json => "::json",
    }
}

/// The statement of a row's shape, and the types of its parameters.
pub fn statement(row: &Row) -> (String, Vec<PgType>) {
    let marks: Vec<String> = row
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| format!("${}{}", i + 1, cast(*t)))
        .collect();
    let sql = row.insert_sql(&marks, "EXCLUDED");
    let types = row
        .columns
        .iter()
        .map(|(_, t)| match t {
            Type::Bytes => PgType::BYTEA,
            _ => PgType::TEXT,
        })
        .collect();
    (sql, types)
}

/// A parameter: the checked value as the text its cast reads, or the bytes.
enum Param {
    Text(String),
    Bytes(Vec<u8>),
}

impl Param {
    fn of(v: &Checked) -> Param {
        match v {
            Checked::Bool(b) => Param::Text(b.to_string()),
            Checked::Int(n) => Param::Text(n.to_string()),
            Checked::Float(f) => Param::Text(f.to_string()),
            Checked::Text(s) | Checked::Typed(s) => Param::Text(s.clone()),
            Checked::Bytes(b) => Param::Bytes(b.clone()),
            Checked::Uuid(u) => Param::Text(u.to_string()),
        }
    }

    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Bytes(b) => b,
        }
    }
}

impl Postgres {
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        ctx: SinkContext,
    ) -> Result<Self, runnel_runtime::BoxError> {
        let (config, shown) = sql_common::pg::config(url, connect_timeout, "runnel-sql-sink")?;
        Ok(Postgres {
            config,
            shown,
            conn: Arc::new(Mutex::new(None)),
            ctx,
        })
    }

    async fn connect(&self) -> Result<Conn, DeliveryError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            let why = format!("connecting to {}: {}", self.shown, describe(&e));
            // A refused login or a database that does not exist will not change by waiting.
            if refused(&e) {
                self.ctx.fail(why.clone());
                DeliveryError::permanent(why)
            } else {
                DeliveryError::retryable(why)
            }
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "The PostgreSQL connection ended.");
            }
        });
        tracing::info!(database = %self.shown, "Connected to PostgreSQL.");
        self.ctx.set_ready(true);
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Keeps `/readyz` true to the database while no records flow.
    pub fn keep(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (conn, config, shown, ctx) = (
            self.conn.clone(),
            self.config.clone(),
            self.shown.clone(),
            self.ctx.clone(),
        );
        let me = Postgres {
            config,
            shown,
            conn,
            ctx,
        };
        async move {
            let mut logged = false;
            loop {
                if let Ok(mut slot) = me.conn.try_lock() {
                    let alive = match slot.as_ref() {
                        Some(c) => c.client.simple_query("").await.is_ok(),
                        None => false,
                    };
                    if !alive {
                        *slot = None;
                        match me.connect().await {
                            Ok(c) => {
                                *slot = Some(c);
                                logged = false;
                            }
                            Err(e) if !e.retryable => return,
                            Err(e) => {
                                me.ctx.set_ready(false);
                                if !logged {
                                    tracing::warn!(error = %e.message, "Cannot reach the database; /readyz reports it, and records wait.");
                                }
                                logged = true;
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(KEEP_EVERY) => {}
                    _ = me.ctx.shutdown().wait() => return,
                }
            }
        }
    }

    /// Writes `rows` (with their batch index) in one transaction; on a statement the
    /// database refuses, again one row per savepoint.
    pub async fn write(&self, rows: Vec<(usize, Row)>, mark: Option<&Mark>) -> Outcome {
        let mut slot = self.conn.lock().await;
        // While the database is away the batch waits for it: an outage does not use up the
        // batch's attempts, and /readyz says 503 meanwhile.
        let mut wait = Duration::from_millis(100);
        let mut logged = false;
        while slot.is_none() {
            match self.connect().await {
                Ok(c) => *slot = Some(c),
                Err(e) if !e.retryable => return Err(e),
                Err(e) => {
                    self.ctx.set_ready(false);
                    if !logged {
                        tracing::warn!(error = %e.message, "Cannot reach the database; the batch waits for it.");
                        logged = true;
                    }
                    self.ctx.wait_for_outside(&mut wait).await?;
                }
            }
        }
        let Some(conn) = slot.as_mut() else {
            return Err(DeliveryError::retryable("not connected"));
        };
        let result = match write_all(conn, &rows, mark).await {
            Ok(()) => Ok(Vec::new()),
            Err(e) if !transient(&e) => write_each(conn, &rows, mark).await,
            Err(e) => Err(DeliveryError::retryable(describe(&e))),
        };
        if result.is_err() {
            // The connection or the server failed: a new connection for the retry.
            *slot = None;
            self.ctx.set_ready(false);
        }
        result
    }
}

impl Postgres {
    /// The next offset stored for `consumer` on `topic`/`partition` (the marks table made
    /// first when missing).
    pub async fn stored(&self, at: Place<'_>) -> Result<Option<i64>, DeliveryError> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(DeliveryError::retryable("not connected"));
        };
        let got = async {
            conn.client.batch_execute(MARKS_TABLE).await?;
            conn.client
                .query_opt(
                    "SELECT next_offset FROM runnel_offsets WHERE consumer = $1 AND topic = $2 AND partition = $3",
                    &[&at.consumer, &at.topic, &at.partition],
                )
                .await
        }
        .await;
        match got {
            Ok(row) => Ok(row.map(|r| r.get::<_, i64>(0))),
            Err(e) => {
                *slot = None;
                Err(DeliveryError::retryable(format!(
                    "reading runnel_offsets: {}",
                    describe(&e)
                )))
            }
        }
    }
}

/// Writes the mark inside `tx`.
async fn write_mark(
    tx: &tokio_postgres::Transaction<'_>,
    m: &Mark,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(MARK_SQL, &[&m.consumer, &m.topic, &m.partition, &m.next])
        .await
        .map(|_| ())
}

/// The prepared statement of `row`'s shape on this connection.
async fn prepared(conn: &mut Conn, row: &Row) -> Result<Statement, tokio_postgres::Error> {
    let shape = row.shape();
    if let Some(s) = conn.statements.get(&shape) {
        return Ok(s.clone());
    }
    let (sql, types) = statement(row);
    let s = conn.client.prepare_typed(&sql, &types).await?;
    conn.statements.insert(shape, s.clone());
    Ok(s)
}

/// All rows in one transaction, the statements pipelined.
async fn write_all(
    conn: &mut Conn,
    rows: &[(usize, Row)],
    mark: Option<&Mark>,
) -> Result<(), tokio_postgres::Error> {
    let mut statements = Vec::with_capacity(rows.len());
    for (_, row) in rows {
        statements.push(prepared(conn, row).await?);
    }
    let params: Vec<Vec<Param>> = rows
        .iter()
        .map(|(_, r)| r.values.iter().map(Param::of).collect())
        .collect();
    let tx = conn.client.transaction().await?;
    let writes = statements.iter().zip(&params).map(|(s, p)| {
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            p.iter().map(Param::as_sql).collect();
        let tx = &tx;
        async move { tx.execute(s, &refs).await }
    });
    futures_util::future::try_join_all(writes).await?;
    if let Some(m) = mark {
        write_mark(&tx, m).await?;
    }
    tx.commit().await
}

/// One savepoint per row: a row the database refuses is rolled back alone and follows
/// on_error; the others commit together.
async fn write_each(conn: &mut Conn, rows: &[(usize, Row)], mark: Option<&Mark>) -> Outcome {
    let mut statements = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for (i, row) in rows {
        match prepared(conn, row).await {
            Ok(s) => statements.push(Some(s)),
            Err(e) if transient(&e) => return Err(DeliveryError::retryable(describe(&e))),
            Err(e) => {
                refused.push((*i, DeliveryError::permanent(describe(&e))));
                statements.push(None);
            }
        }
    }
    let fail = |e: tokio_postgres::Error| DeliveryError::retryable(describe(&e));
    let mut tx = conn.client.transaction().await.map_err(fail)?;
    for ((i, row), s) in rows.iter().zip(&statements) {
        let Some(s) = s else { continue };
        let params: Vec<Param> = row.values.iter().map(Param::of).collect();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(Param::as_sql).collect();
        let sp = tx.savepoint("runnel_row").await.map_err(fail)?;
        match sp.execute(s, &refs).await {
            Ok(_) => sp.commit().await.map_err(fail)?,
            Err(e) if transient(&e) => return Err(fail(e)),
            Err(e) => {
                sp.rollback().await.map_err(fail)?;
                refused.push((*i, DeliveryError::permanent(describe(&e))));
            }
        }
    }
    if let Some(m) = mark {
        write_mark(&tx, m).await.map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    refused.sort_by_key(|(i, _)| *i);
    Ok(refused)
}

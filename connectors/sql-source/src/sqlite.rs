//! SQLite through rusqlite, read-only, on a blocking thread: each row's values mapped to
//! JSON here (integers and reals as numbers, text as strings, blobs as `\x` and hex as
//! PostgreSQL writes them, NULL as null), in the order of the columns.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, types::Value as Sql, types::ValueRef};
use serde_json::Value;
use sql_source::Mode;
use tokio::runtime::Handle;

use crate::{Failure, Out, Plan, Position, Row, Sqls};

/// The most rows handed on at once while a result is streamed.
const CHUNK: usize = 1000;

/// How long a read waits for a writer's lock before it counts as lost for now.
const BUSY: Duration = Duration::from_secs(5);

fn failure(e: &rusqlite::Error) -> Failure {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => Failure::Lost(e.to_string()),
        _ => Failure::Fatal(e.to_string()),
    }
}

pub struct Reader {
    conn: Arc<Mutex<Connection>>,
    shown: String,
    plan: Arc<Plan>,
    sqls: Arc<Sqls>,
}

/// A JSON value as SQLite compares it.
fn sql(v: &Value) -> Sql {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Null => Sql::Null,
        other => Sql::Text(other.to_string()),
    }
}

fn json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                let _ = write!(s, "{byte:02x}");
            }
            Value::String(s)
        }
    }
}

/// Where the position and key columns are among a statement's columns.
struct Columns {
    incrementing: Option<usize>,
    timestamp: Option<usize>,
    key: Option<usize>,
    names: Vec<String>,
}

impl Columns {
    fn of(stmt: &rusqlite::Statement<'_>, plan: &Plan) -> Columns {
        let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
        let find = |c: &Option<String>| {
            c.as_ref()
                .and_then(|c| names.iter().position(|n| n.eq_ignore_ascii_case(c)))
        };
        Columns {
            incrementing: find(&plan.incrementing),
            timestamp: find(&plan.timestamp),
            key: find(&plan.key),
            // Each name as a JSON string, once.
            names: names
                .iter()
                .map(|n| serde_json::to_string(n).unwrap_or_default())
                .collect(),
        }
    }

    fn row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let mut value = String::from("{");
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                value.push(',');
            }
            value.push_str(name);
            value.push(':');
            value.push_str(&json(r.get_ref(i)?).to_string());
        }
        value.push('}');
        let at = |i: Option<usize>| -> rusqlite::Result<Option<Value>> {
            Ok(match i {
                Some(i) => Some(json(r.get_ref(i)?)).filter(|v| !v.is_null()),
                None => None,
            })
        };
        let key = at(self.key)?.map(|k| match k {
            Value::String(s) => s,
            other => other.to_string(),
        });
        Ok(Row {
            value,
            incrementing: at(self.incrementing)?,
            timestamp: at(self.timestamp)?,
            key,
        })
    }
}

impl Reader {
    pub async fn open(path: &str, plan: Arc<Plan>) -> Result<Reader, Failure> {
        let shown = format!("sqlite:{path}");
        let p = plan.clone();
        let opened = {
            let path = path.to_string();
            tokio::task::spawn_blocking(move || -> Result<(Connection, Sqls), Failure> {
                let conn = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_URI
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| Failure::Fatal(format!("cannot open SQLite database {path}: {e}")))?;
                conn.busy_timeout(BUSY).map_err(|e| failure(&e))?;
                let probe = p.probe();
                conn.prepare(&probe).map_err(|e| match failure(&e) {
                    Failure::Fatal(why) => {
                        Failure::Fatal(format!("reading from sqlite:{path}: {why}"))
                    }
                    other => other,
                })?;
                Ok((conn, Reader::sqls(&p)))
            })
            .await
            .map_err(|e| Failure::Fatal(format!("the SQLite reader failed: {e}")))?
        };
        let (conn, sqls) = opened?;
        Ok(Reader {
            conn: Arc::new(Mutex::new(conn)),
            shown,
            plan,
            sqls: Arc::new(sqls),
        })
    }

    fn sqls(plan: &Plan) -> Sqls {
        let old_enough = match (&plan.timestamp, plan.delay.is_zero()) {
            (Some(ts), false) => Some(format!(
                "q.{ts} < strftime('%Y-%m-%d %H:%M:%f', 'now', '-{:.3} seconds')",
                plan.delay.as_secs_f64()
            )),
            _ => None,
        };
        let select = format!("SELECT * FROM ({}) AS q", plan.source);
        plan.sqls(&select, |n, _| format!("?{n}"), old_enough)
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `f` on the connection, on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Plan, &Sqls) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let (conn, plan, sqls) = (self.conn.clone(), self.plan.clone(), self.sqls.clone());
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn, &plan, &sqls)
        })
        .await
        .map_err(|e| Failure::Fatal(format!("the SQLite reader failed: {e}")))?
    }

    pub async fn next(&mut self, after: Option<&Position>) -> Result<Vec<Row>, Failure> {
        let params: Vec<Sql> = match after {
            None => Vec::new(),
            Some(p) => {
                let inc = p.incrementing.as_ref().map(sql).unwrap_or(Sql::Null);
                let ts = p.timestamp.as_ref().map(sql).unwrap_or(Sql::Null);
                match self.plan.mode {
                    Mode::Incrementing => vec![inc],
                    Mode::Timestamp => vec![ts],
                    _ => vec![ts, inc],
                }
            }
        };
        self.with(move |conn, plan, sqls| {
            let text = if params.is_empty() {
                &sqls.first
            } else {
                &sqls.next
            };
            let mut stmt = conn.prepare_cached(text).map_err(|e| failure(&e))?;
            let columns = Columns::of(&stmt, plan);
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| failure(&e))?;
            let mut got = Vec::new();
            while let Some(r) = rows.next().map_err(|e| failure(&e))? {
                got.push(columns.row(r).map_err(|e| failure(&e))?);
            }
            Ok(got)
        })
        .await
    }

    /// Streams a statement's rows on in chunks from the blocking thread.
    async fn stream(
        &self,
        which: fn(&Sqls) -> &str,
        params: Vec<Sql>,
        out: &Out,
        positioned: bool,
    ) -> Result<Option<Position>, Failure> {
        let out = out.clone();
        let handle = Handle::current();
        self.with(move |conn, plan, sqls| {
            let mut stmt = conn.prepare_cached(which(sqls)).map_err(|e| failure(&e))?;
            let columns = Columns::of(&stmt, plan);
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| failure(&e))?;
            let mut chunk = Vec::with_capacity(CHUNK);
            while let Some(r) = rows.next().map_err(|e| failure(&e))? {
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    handle.block_on(out.some(full))?;
                }
                chunk.push(columns.row(r).map_err(|e| failure(&e))?);
            }
            if positioned {
                Ok(handle.block_on(out.ending(chunk))?)
            } else {
                handle.block_on(out.some(chunk))?;
                Ok(None)
            }
        })
        .await
    }

    pub async fn group(&mut self, ts: &Value, out: &Out) -> Result<Option<Position>, Failure> {
        self.stream(|s| &s.group, vec![sql(ts)], out, true).await
    }

    pub async fn bulk(&mut self, out: &Out) -> Result<(), Failure> {
        self.stream(|s| &s.bulk, Vec::new(), out, false).await?;
        Ok(())
    }

    pub async fn last(&mut self) -> Result<Option<Row>, Failure> {
        self.with(|conn, plan, sqls| {
            let mut stmt = conn.prepare_cached(&sqls.last).map_err(|e| failure(&e))?;
            let columns = Columns::of(&stmt, plan);
            let mut rows = stmt.query([]).map_err(|e| failure(&e))?;
            match rows.next().map_err(|e| failure(&e))? {
                Some(r) => Ok(Some(columns.row(r).map_err(|e| failure(&e))?)),
                None => Ok(None),
            }
        })
        .await
    }
}

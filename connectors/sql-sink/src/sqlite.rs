//! SQLite through rusqlite, on a blocking thread: values bound as Fluvio's sink binds them
//! (integers, reals, text, blobs; a UUID as its 16 bytes, a numeric as a real).

use std::sync::{Arc, Mutex};

use runnel_runtime::pipeline::{DeliveryError, SinkContext};
use rusqlite::{Connection, ToSql, types::Value as Sql};

use crate::{
    Outcome,
    model::{Checked, MARKS_TABLE, Mark, Place, Row, Type},
};

/// Writes the mark inside the transaction `conn` is in.
fn write_mark(conn: &Connection, m: &Mark) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO runnel_offsets (consumer, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        rusqlite::params![m.consumer, m.topic, m.partition, m.next],
    )
}

pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

/// The statement of a row's shape.
pub fn statement(row: &Row) -> String {
    let marks: Vec<String> = (1..=row.columns.len()).map(|i| format!("?{i}")).collect();
    row.insert_sql(&marks, "excluded")
}

fn value(kind: Type, v: &Checked) -> Sql {
    match v {
        Checked::Bool(b) => Sql::Integer(i64::from(*b)),
        Checked::Int(n) => Sql::Integer(*n),
        Checked::Float(f) => Sql::Real(*f),
        Checked::Text(s) => Sql::Text(s.clone()),
        Checked::Bytes(b) => Sql::Blob(b.clone()),
        Checked::Uuid(u) => Sql::Blob(u.as_bytes().to_vec()),
        // Fluvio's sink binds a numeric as a double on SQLite.
        Checked::Typed(s) if kind == Type::Numeric => s
            .parse()
            .map(Sql::Real)
            .unwrap_or_else(|_| Sql::Text(s.clone())),
        Checked::Typed(s) => Sql::Text(s.clone()),
    }
}

/// Whether SQLite failed for a reason a retry can fix (busy, locked, out of space, I/O).
fn transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(
            C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull | C::CannotOpen
        )
    )
}

fn execute(conn: &Connection, row: &Row) -> rusqlite::Result<usize> {
    let mut s = conn.prepare_cached(&statement(row))?;
    let values: Vec<Sql> = row
        .columns
        .iter()
        .zip(&row.values)
        .map(|((_, t), v)| value(*t, v))
        .collect();
    let refs: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
    s.execute(refs.as_slice())
}

/// All rows in one transaction; when SQLite refuses one, again one row per savepoint.
fn write(conn: &mut Connection, rows: &[(usize, Row)], mark: Option<&Mark>) -> Outcome {
    let fail = |e: rusqlite::Error| DeliveryError::retryable(runnel_runtime::chain(&e));
    let all = (|| {
        let tx = conn.transaction()?;
        for (_, row) in rows {
            execute(&tx, row)?;
        }
        if let Some(m) = mark {
            write_mark(&tx, m)?;
        }
        tx.commit()
    })();
    match all {
        Ok(()) => return Ok(Vec::new()),
        Err(e) if transient(&e) => return Err(fail(e)),
        Err(_) => {}
    }
    let mut refused = Vec::new();
    let mut tx = conn.transaction().map_err(fail)?;
    for (i, row) in rows {
        let sp = tx.savepoint().map_err(fail)?;
        match execute(&sp, row) {
            Ok(_) => sp.commit().map_err(fail)?,
            Err(e) if transient(&e) => return Err(fail(e)),
            Err(e) => {
                drop(sp);
                refused.push((*i, DeliveryError::permanent(e.to_string())));
            }
        }
    }
    if let Some(m) = mark {
        write_mark(&tx, m).map_err(fail)?;
    }
    tx.commit().map_err(fail)?;
    Ok(refused)
}

impl Sqlite {
    pub fn open(path: &str, ctx: &SinkContext) -> Result<Self, runnel_runtime::BoxError> {
        let conn = Connection::open(path)
            .map_err(|e| format!("url: cannot open the SQLite database {path}: {e}"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        if path != ":memory:" {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        tracing::info!(database = %path, "Opened the SQLite database.");
        ctx.set_ready(true);
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub async fn write(&self, rows: Vec<(usize, Row)>, mark: Option<&Mark>) -> Outcome {
        let conn = self.conn.clone();
        let mark = mark.cloned();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            write(&mut c, &rows, mark.as_ref())
        })
        .await
        .map_err(|e| DeliveryError::retryable(format!("the SQLite writer failed: {e}")))?
    }

    /// What `Postgres::stored` reads, here.
    pub async fn stored(&self, at: Place<'_>) -> Result<Option<i64>, DeliveryError> {
        let conn = self.conn.clone();
        let key = (at.consumer.to_string(), at.topic.to_string(), at.partition);
        tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            c.execute_batch(MARKS_TABLE)?;
            c.query_row(
                "SELECT next_offset FROM runnel_offsets WHERE consumer = ?1 AND topic = ?2 AND partition = ?3",
                rusqlite::params![key.0, key.1, key.2],
                |r| r.get::<_, i64>(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
        })
        .await
        .map_err(|e| DeliveryError::retryable(format!("the SQLite writer failed: {e}")))?
        .map_err(|e| DeliveryError::retryable(format!("reading runnel_offsets: {e}")))
    }
}

//! SQLite through rusqlite, on a blocking thread: values bound as Fluvio's sink binds them
//! (integers, reals, text, blobs; a UUID as its 16 bytes, a numeric as a real).

use std::sync::{Arc, Mutex};

use runnel_runtime::pipeline::{DeliveryError, SinkContext};
use rusqlite::{Connection, ToSql, types::Value as Sql};

use crate::{
    Outcome,
    model::{Checked, Row, Type},
};

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
fn write(conn: &mut Connection, rows: &[(usize, Row)]) -> Outcome {
    let fail = |e: rusqlite::Error| DeliveryError::retryable(runnel_runtime::chain(&e));
    let all = (|| {
        let tx = conn.transaction()?;
        for (_, row) in rows {
            execute(&tx, row)?;
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

    pub async fn write(&self, rows: Vec<(usize, crate::model::Row)>) -> Outcome {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            write(&mut c, &rows)
        })
        .await
        .map_err(|e| DeliveryError::retryable(format!("the SQLite writer failed: {e}")))?
    }
}

//! The embedded hub: topics in one SQLite file in WAL mode.
//!
//! Records are stored the way Kafka and Fluvio store them: one row per producer batch, holding
//! the batch's records encoded back to back, keyed by (topic, base offset). One insert per
//! batch instead of one per record is what lets a connector write hundreds of thousands of
//! records a second; a reader seeks to the batch holding its offset and decodes from there.
//!
//! WAL lets one writer and many readers work at once across processes; writers take the
//! database lock with `BEGIN IMMEDIATE` and wait on `busy_timeout`, so several sources may
//! share a file. Offsets are dense per topic: each batch reads the topic's last offset inside
//! its write transaction. Readers notice new commits through `PRAGMA data_version`, which
//! changes whenever another connection commits, so following a topic costs one cheap query
//! per poll. `synchronous=NORMAL`: a committed batch survives the process being killed; only
//! an OS crash or power loss may lose the last batches.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::{HubError, TopicInfo};
use crate::{
    config::OffsetStart,
    record::{ConsumedRecord, Record},
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (
    -- AUTOINCREMENT: a deleted topic's id is never given to a new one, so a consumer still
    -- holding it cannot read another topic's records.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    topic_id INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_by_offset ON batches (topic_id, base_offset);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer TEXT NOT NULL,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (consumer, topic_id, partition)
);
";

/// A handle on one hub file. Cheap to clone; producers and consumers open their own
/// connections so they never wait on each other inside this process.
#[derive(Debug, Clone)]
pub struct LocalHub {
    path: PathBuf,
    admin: Arc<Mutex<Connection>>,
}

type Shared = Arc<Mutex<Connection>>;

impl LocalHub {
    pub async fn open(path: PathBuf) -> Result<Self, HubError> {
        let p = path.clone();
        let conn = blocking(&path, move || {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Err::Io(format!("creating {}", dir.display()), Some(e.into())))?;
            }
            open_with_schema(&p)
        })
        .await?;
        Ok(LocalHub {
            path,
            admin: Arc::new(Mutex::new(conn)),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    async fn with_admin<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Err> + Send + 'static,
    ) -> Result<T, HubError> {
        let conn = self.admin.clone();
        blocking(&self.path, move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Err::Io("connection lock poisoned".into(), None))?;
            f(&mut guard)
        })
        .await
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), HubError> {
        if partitions != 1 {
            return Err(HubError::Invalid(format!(
                "the local hub keeps one partition per topic, {partitions} were asked for; use a Kafka or NATS hub for more"
            )));
        }
        let name = name.to_string();
        self.with_admin(move |c| {
            let n = c.execute(
                "INSERT INTO topics (name, partitions, created_ms) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
                params![name, partitions, crate::record::now_millis()],
            )?;
            if n == 0 {
                return Err(Err::Hub(HubError::TopicExists(name)));
            }
            Ok(())
        })
        .await
    }

    pub async fn topic(&self, name: &str) -> Result<Option<TopicInfo>, HubError> {
        let name = name.to_string();
        self.with_admin(move |c| topic_info(c, &name)).await
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, HubError> {
        self.with_admin(|c| {
            let names: Vec<String> = c
                .prepare("SELECT name FROM topics ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                if let Some(t) = topic_info(c, &n)? {
                    out.push(t);
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), HubError> {
        let name = name.to_string();
        self.with_admin(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let id: Option<i64> = tx
                .query_row("SELECT id FROM topics WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(id) = id else {
                return Err(Err::Hub(HubError::TopicNotFound(name)));
            };
            tx.execute("DELETE FROM batches WHERE topic_id = ?1", [id])?;
            tx.execute("DELETE FROM consumer_offsets WHERE topic_id = ?1", [id])?;
            tx.execute("DELETE FROM topics WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn producer(&self, topic: &str) -> Result<LocalProducer, HubError> {
        if self.topic(topic).await?.is_none() {
            return Err(HubError::TopicNotFound(topic.to_string()));
        }
        LocalProducer::open(self.path.clone(), topic.to_string()).await
    }

    pub async fn consumer(
        &self,
        topic: &str,
        partition: u32,
        consumer_id: Option<&str>,
        start: OffsetStart,
    ) -> Result<LocalConsumer, HubError> {
        if partition != 0 {
            return Err(HubError::Invalid(format!(
                "topic {topic:?} has one partition in the local hub; partition {partition} does not exist"
            )));
        }
        let p = self.path.clone();
        let t = topic.to_string();
        let id = consumer_id.map(String::from);
        let (conn, topic_id, position) = blocking(&self.path, move || {
            let conn = open_conn(&p)?;
            let topic_id = topic_id(&conn, &t)?;
            let stored: Option<i64> = match &id {
                Some(id) => conn
                    .query_row(
                        "SELECT next_offset FROM consumer_offsets WHERE consumer = ?1 AND topic_id = ?2 AND partition = 0",
                        params![id, topic_id],
                        |r| r.get(0),
                    )
                    .optional()?,
                None => None,
            };
            let end = end_offset(&conn, topic_id)?;
            let position = match stored {
                Some(o) => o,
                None => match start {
                    OffsetStart::Beginning => 0,
                    OffsetStart::End => end,
                    OffsetStart::Absolute(n) if n < 0 => (end + n).max(0),
                    OffsetStart::Absolute(n) => n,
                    OffsetStart::FromBeginning(n) => i64::from(n),
                    OffsetStart::FromEnd(n) => (end - i64::from(n)).max(0),
                },
            };
            Ok((conn, topic_id, position))
        })
        .await?;
        Ok(LocalConsumer {
            path: self.path.clone(),
            topic: topic.to_string(),
            topic_id,
            consumer_id: consumer_id.map(String::from),
            position,
            conn: Arc::new(Mutex::new(conn)),
            data_version: None,
            rest: None,
        })
    }
}

/// Appends to one topic.
///
/// Batches go to a writer thread of the producer's own, which writes them in the order they
/// were queued. Whatever is queued when the thread takes its next batch goes into the same
/// transaction (group commit): sources that wait for each record's acknowledgement (webhooks,
/// queues) pay one commit for all their waiting batches, and the caller frames the next batch
/// while the last one is written. After a write fails, the batches queued behind it fail too
/// until one is sent again with [`LocalProducer::send`], so a retry keeps the topic's order.
#[derive(Debug)]
pub struct LocalProducer {
    path: PathBuf,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// One batch for the writer thread, encoded.
struct Job {
    data: Vec<u8>,
    count: usize,
    /// Written even after a failure (a retry): the failed state ends here.
    retry: bool,
    done: tokio::sync::oneshot::Sender<Result<i64, HubError>>,
}

/// A group commit takes queued batches up to about this many bytes.
const GROUP_BYTES: usize = 8 << 20;

impl LocalProducer {
    async fn open(path: PathBuf, topic: String) -> Result<Self, HubError> {
        let p = path.clone();
        let conn = blocking(&path, move || open_conn(&p)).await?;
        let (jobs, queue) = std::sync::mpsc::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("runnel-hub-writer".into())
            .spawn(move || write_loop(conn, &topic, &shown, queue))
            .map_err(|e| HubError::Io {
                path: path.display().to_string(),
                what: "starting the writer thread".into(),
                source: Some(e.into()),
            })?;
        Ok(LocalProducer { path, jobs })
    }

    /// Queues `records` behind every batch queued before; the future resolves with the
    /// offset of the first once they are committed.
    pub fn enqueue(&self, records: &[Record]) -> Result<super::Pending, HubError> {
        self.queue(records, false)
    }

    /// Writes `records` after every batch queued before, even when one of those failed.
    pub async fn send(&mut self, records: Arc<Vec<Record>>) -> Result<i64, HubError> {
        self.queue(&records, true)?.await
    }

    fn queue(&self, records: &[Record], retry: bool) -> Result<super::Pending, HubError> {
        let mut data = Vec::with_capacity(records.iter().map(|r| r.size() + 24).sum());
        for r in records {
            encode_record(r, &mut data);
        }
        let (done, written) = tokio::sync::oneshot::channel();
        let gone = || HubError::Io {
            path: self.path.display().to_string(),
            what: "the writer thread has stopped".into(),
            source: None,
        };
        self.jobs
            .send(Job {
                data,
                count: records.len(),
                retry,
                done,
            })
            .map_err(|_| gone())?;
        let gone = gone();
        Ok(Box::pin(async move { written.await.unwrap_or(Err(gone)) }))
    }
}

/// The writer thread: takes batches in order, as many as are queued into one transaction.
fn write_loop(
    mut conn: Connection,
    topic: &str,
    path: &str,
    queue: std::sync::mpsc::Receiver<Job>,
) {
    // The reason of the last failure while batches behind it are being refused.
    let mut failed: Option<String> = None;
    let mut group: Vec<Job> = Vec::new();
    while let Ok(first) = queue.recv() {
        group.push(first);
        let mut bytes = group[0].data.len();
        while bytes < GROUP_BYTES {
            match queue.try_recv() {
                Ok(j) => {
                    bytes += j.data.len();
                    group.push(j);
                }
                Err(_) => break,
            }
        }
        let mut jobs = group.drain(..).peekable();
        while jobs.peek().is_some() {
            // Refused while an earlier batch failed and no retry came yet.
            if let Some(why) = &failed {
                let j = jobs.next().expect("a queued batch");
                if !j.retry {
                    let _ = j.done.send(Err(HubError::Io {
                        path: path.to_string(),
                        what: format!("not written: an earlier batch failed ({why})"),
                        source: None,
                    }));
                    continue;
                }
                let mut one = std::iter::once(j).peekable();
                failed = commit(&mut conn, topic, path, &mut one);
                continue;
            }
            failed = commit(&mut conn, topic, path, &mut jobs);
        }
    }
}

/// Writes the batches `jobs` yields in one transaction (up to the first retry after the
/// first batch, which starts a transaction of its own) and answers each; the reason when it
/// failed.
fn commit(
    conn: &mut Connection,
    topic: &str,
    path: &str,
    jobs: &mut std::iter::Peekable<impl Iterator<Item = Job>>,
) -> Option<String> {
    let mut taken = Vec::new();
    let result = (|| -> Result<Vec<i64>, Err> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Looked up per transaction: the topic may have been deleted and recreated meanwhile.
        let id = topic_id(&tx, topic)?;
        let mut base = end_offset(&tx, id)?;
        let mut bases = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO batches (topic_id, base_offset, count, data) VALUES (?1, ?2, ?3, ?4)",
            )?;
            while let Some(j) = jobs.next_if(|j| taken.is_empty() || !j.retry) {
                if j.count > 0 {
                    insert.execute(params![id, base, j.count as i64, j.data])?;
                }
                bases.push(base);
                base += j.count as i64;
                taken.push(j);
            }
        }
        tx.commit()?;
        Ok(bases)
    })();
    match result {
        Ok(bases) => {
            for (j, base) in taken.into_iter().zip(bases) {
                let _ = j.done.send(Ok(base));
            }
            None
        }
        Err(e) => {
            // A failure before the first batch was taken still answers it.
            if taken.is_empty() {
                taken.extend(jobs.next());
            }
            let first = hub_error(path, e);
            let why = crate::Chain(&first).to_string();
            let mut first = Some(first);
            for j in taken {
                let err = first.take().unwrap_or_else(|| HubError::Io {
                    path: path.to_string(),
                    what: format!(
                        "not written: in one transaction with a batch that failed ({why})"
                    ),
                    source: None,
                });
                let _ = j.done.send(Err(err));
            }
            Some(why)
        }
    }
}

/// Reads one topic from a position, and stores that position under a consumer id.
#[derive(Debug)]
pub struct LocalConsumer {
    path: PathBuf,
    topic: String,
    topic_id: i64,
    consumer_id: Option<String>,
    position: i64,
    conn: Shared,
    data_version: Option<i64>,
    /// The stored batch the last fetch ended in, so the next one goes on inside it instead
    /// of reading and decoding it again from its start (a batch may hold many fetches).
    rest: Option<Rest>,
}

/// Where a fetch stopped inside a stored batch.
#[derive(Debug)]
struct Rest {
    /// The batch's base offset and its bytes.
    base: i64,
    data: Bytes,
    /// Where the next record starts in `data`, and its offset.
    at: usize,
    offset: i64,
}

impl Rest {
    /// Decodes records from where the last fetch stopped, into `out` until it holds `max`.
    fn take(
        &mut self,
        topic: &Arc<str>,
        max: usize,
        out: &mut Vec<ConsumedRecord>,
    ) -> Result<(), Err> {
        while self.at < self.data.len() && out.len() < max {
            let Some((record, next)) = decode_record(&self.data, self.at) else {
                return Err(Err::Io(
                    format!(
                        "topic {topic:?}: the batch at offset {} is corrupt",
                        self.base
                    ),
                    None,
                ));
            };
            out.push(ConsumedRecord {
                topic: topic.to_string(),
                partition: 0,
                offset: self.offset,
                record,
            });
            self.at = next;
            self.offset += 1;
        }
        Ok(())
    }
}

impl LocalConsumer {
    pub fn position(&self) -> i64 {
        self.position
    }

    pub async fn end_offset(&mut self) -> Result<i64, HubError> {
        let conn = self.conn.clone();
        let id = self.topic_id;
        blocking(&self.path, move || {
            let c = conn
                .lock()
                .map_err(|_| Err::Io("connection lock poisoned".into(), None))?;
            end_offset(&c, id)
        })
        .await
    }

    pub async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ConsumedRecord>, HubError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let conn = self.conn.clone();
            let (id, from, known) = (self.topic_id, self.position, self.data_version);
            let topic = self.topic.clone();
            // Only valid where this consumer stopped (a seek moves the position elsewhere).
            let rest = self.rest.take().filter(|r| r.offset == from);
            let (records, version, rest) = blocking(&self.path, move || {
                let topic: Arc<str> = Arc::from(topic.as_str());
                let mut records = Vec::new();
                let mut rest = rest;
                if let Some(r) = rest.as_mut() {
                    r.take(&topic, max, &mut records)?;
                    if records.len() >= max {
                        return Ok((records, None, rest));
                    }
                }
                let c = conn.lock().map_err(|_| Err::Io("connection lock poisoned".into(), None))?;
                let version: i64 = c.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                if records.is_empty() && known == Some(version) {
                    return Ok((records, Some(version), rest));
                }
                // The batches after the one already read; else from the batch holding `from`
                // onward. The cursor streams, so stopping at `max` records reads no further.
                let (sql, at) = match &rest {
                    Some(r) => (
                        "SELECT base_offset, data FROM batches WHERE topic_id = ?1 AND base_offset > ?2 \
                         ORDER BY base_offset",
                        r.base,
                    ),
                    None => (
                        "SELECT base_offset, data FROM batches WHERE topic_id = ?1 AND base_offset >= \
                         (SELECT COALESCE(MAX(base_offset), 0) FROM batches WHERE topic_id = ?1 AND base_offset <= ?2) \
                         ORDER BY base_offset",
                        from,
                    ),
                };
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(params![id, at])?;
                while records.len() < max
                    && let Some(row) = rows.next()?
                {
                    let base: i64 = row.get(0)?;
                    let data = Bytes::from(row.get::<_, Vec<u8>>(1)?);
                    let mut r = Rest {
                        base,
                        data,
                        at: 0,
                        offset: base,
                    };
                    // Records before `from` in the first batch are stepped over.
                    while r.offset < from && r.at < r.data.len() {
                        let Some(next) = record_end(&r.data, r.at) else {
                            return Err(Err::Io(
                                format!("topic {topic:?}: the batch at offset {base} is corrupt"),
                                None,
                            ));
                        };
                        r.at = next;
                        r.offset += 1;
                    }
                    r.take(&topic, max, &mut records)?;
                    rest = Some(r);
                }
                Ok((records, Some(version), rest))
            })
            .await?;
            self.rest = rest;
            let version = version.unwrap_or_default();
            if let Some(last) = records.last() {
                self.position = last.offset + 1;
                // More may be waiting beyond `max`: look again next time regardless.
                self.data_version = None;
                return Ok(records);
            }
            // Nothing new: remember the version so the next poll is a single PRAGMA.
            self.data_version = Some(version);
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    pub async fn commit(&mut self, next_offset: i64) -> Result<(), HubError> {
        let Some(consumer) = self.consumer_id.clone() else {
            return Ok(());
        };
        let conn = self.conn.clone();
        let id = self.topic_id;
        blocking(&self.path, move || {
            let c = conn.lock().map_err(|_| Err::Io("connection lock poisoned".into(), None))?;
            c.execute(
                "INSERT INTO consumer_offsets (consumer, topic_id, partition, next_offset, updated_ms) VALUES (?1, ?2, 0, ?3, ?4)
                 ON CONFLICT (consumer, topic_id, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_ms = excluded.updated_ms",
                params![consumer, id, next_offset, crate::record::now_millis()],
            )?;
            Ok(())
        })
        .await
    }
}

/// Errors inside a blocking closure, turned into [`HubError`] with the file's path after.
enum Err {
    Sql(rusqlite::Error),
    Hub(HubError),
    /// What went wrong, and the cause when there is one.
    Io(String, Option<crate::BoxError>),
}

impl From<rusqlite::Error> for Err {
    fn from(e: rusqlite::Error) -> Self {
        Err::Sql(e)
    }
}

async fn blocking<T: Send + 'static>(
    path: &std::path::Path,
    f: impl FnOnce() -> Result<T, Err> + Send + 'static,
) -> Result<T, HubError> {
    let path_s = path.display().to_string();
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(hub_error(&path_s, e)),
        Err(e) => Err(HubError::Io {
            path: path_s,
            what: "the hub's worker task failed".into(),
            source: Some(e.into()),
        }),
    }
}

fn hub_error(path: &str, e: Err) -> HubError {
    match e {
        Err::Sql(source) => HubError::Local {
            path: path.to_string(),
            source,
        },
        Err::Hub(e) => e,
        Err::Io(what, source) => HubError::Io {
            path: path.to_string(),
            what,
            source,
        },
    }
}

/// Opens the file and creates what is missing. Two processes opening a new file at once
/// race to switch it to WAL and to create the tables; SQLite answers the loser "database is
/// locked" at once there (its busy handler is skipped where waiting could deadlock), so the
/// loser tries again, for up to 30 s like any other wait for the lock.
fn open_with_schema(path: &std::path::Path) -> Result<Connection, Err> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let opened = open_conn(path).and_then(|c| {
            c.execute_batch(SCHEMA)?;
            Ok(c)
        });
        match opened {
            Err(Err::Sql(e))
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20 + fastrand::u64(..30)));
            }
            other => return other,
        }
    }
}

fn open_conn(path: &std::path::Path) -> Result<Connection, Err> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // Batches are large blobs: 16 KiB pages store one in a quarter of the pages (and WAL
    // frames) 4 KiB pages take, which lets the hub take about 1.7 times the bytes a second
    // (a bare SQLite run of 490 KB batches here: 492 against 288 MB/s). It applies only
    // while the file is still empty; an existing file keeps its page size.
    conn.pragma_update(None, "page_size", 16384)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn topic_id(c: &Connection, name: &str) -> Result<i64, Err> {
    c.query_row("SELECT id FROM topics WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| Err::Hub(HubError::TopicNotFound(name.to_string())))
}

fn end_offset(c: &Connection, topic_id: i64) -> Result<i64, Err> {
    let end: Option<i64> = c
        .query_row(
            "SELECT base_offset + count FROM batches WHERE topic_id = ?1 ORDER BY base_offset DESC LIMIT 1",
            [topic_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(end.unwrap_or(0))
}

fn topic_info(c: &Connection, name: &str) -> Result<Option<TopicInfo>, Err> {
    let row: Option<(i64, u32)> = c
        .query_row(
            "SELECT id, partitions FROM topics WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, partitions)) = row else {
        return Ok(None);
    };
    let count: i64 = c.query_row(
        "SELECT COALESCE(SUM(count), 0) FROM batches WHERE topic_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let next = end_offset(c, id)?;
    Ok(Some(TopicInfo {
        name: name.to_string(),
        partitions,
        records: count as u64,
        next_offset: next,
    }))
}

/// One record in a batch, little endian: `i64 timestamp, i32 key length (-1: no key), key,
/// u32 value length, value, u32 headers length, headers`.
fn encode_record(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    match &r.key {
        Some(k) => {
            out.extend_from_slice(&(k.len() as i32).to_le_bytes());
            out.extend_from_slice(k);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.value);
    let mut hdr = Vec::new();
    if !r.headers.is_empty() {
        encode_headers(&r.headers, &mut hdr);
    }
    out.extend_from_slice(&(hdr.len() as u32).to_le_bytes());
    out.extend_from_slice(&hdr);
}

/// The record at `at` and where the next one starts; `None` if the data is cut short.
/// Key and value share the batch's buffer instead of being copied.
/// Where the record starting at `at` ends, without decoding it.
fn record_end(data: &[u8], at: usize) -> Option<usize> {
    let len = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let mut at = at + 8;
    let key_len = len(at)? as i32;
    at += 4 + usize::try_from(key_len).unwrap_or(0);
    at += 4 + len(at)? as usize;
    at += 4 + len(at)? as usize;
    (at <= data.len()).then_some(at)
}

fn decode_record(data: &Bytes, at: usize) -> Option<(Record, usize)> {
    let word = |at: usize, n: usize| data.get(at..at + n);
    let timestamp = i64::from_le_bytes(word(at, 8)?.try_into().ok()?);
    let mut at = at + 8;
    let key_len = i32::from_le_bytes(word(at, 4)?.try_into().ok()?);
    at += 4;
    let key = if key_len < 0 {
        None
    } else {
        let len = key_len as usize;
        word(at, len)?;
        let k = data.slice(at..at + len);
        at += len;
        Some(k)
    };
    let value_len = u32::from_le_bytes(word(at, 4)?.try_into().ok()?) as usize;
    at += 4;
    word(at, value_len)?;
    let value = data.slice(at..at + value_len);
    at += value_len;
    let hdr_len = u32::from_le_bytes(word(at, 4)?.try_into().ok()?) as usize;
    at += 4;
    let headers = decode_headers(word(at, hdr_len)?);
    at += hdr_len;
    Some((
        Record {
            key,
            value,
            timestamp,
            headers,
        },
        at,
    ))
}

/// Headers as `u32 name length, name, u32 value length, value`, repeated; little endian.
fn encode_headers(headers: &[(String, Bytes)], out: &mut Vec<u8>) {
    out.clear();
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
}

/// The inverse of [`encode_headers`]; a truncated tail (never written by this code) is
/// ignored rather than failing the whole read.
fn decode_headers(mut b: &[u8]) -> Vec<(String, Bytes)> {
    fn take<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let out = b.get(4..4 + len)?;
        *b = &b[4 + len..];
        Some(out)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let (Some(k), Some(v)) = (take(&mut b), take(&mut b)) else {
            break;
        };
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            Bytes::copy_from_slice(v),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_a_batch() {
        let recs = [
            Record::new("v1").with_key("k").with_header("h", "x"),
            Record::new(""),
            Record::new(vec![0u8, 255, 7]).with_key(""),
        ];
        let mut data = Vec::new();
        for r in &recs {
            encode_record(r, &mut data);
        }
        let data = Bytes::from(data);
        let mut at = 0;
        for want in &recs {
            let (got, next) = decode_record(&data, at).unwrap();
            assert_eq!(&got, want);
            at = next;
        }
        assert_eq!(at, data.len());
        assert!(decode_record(&data.slice(..data.len() - 1), 0).is_some());
        assert!(decode_record(&data.slice(..5), 0).is_none());
        // Stepping over a record lands where decoding it does.
        let mut at = 0;
        while at < data.len() {
            let next = record_end(&data, at).unwrap();
            assert_eq!(decode_record(&data, at).unwrap().1, next);
            at = next;
        }
        assert!(record_end(&data[..data.len() - 1], 0).is_some());
        assert!(record_end(&data[..5], 0).is_none());
        assert!(record_end(&[0xff; 40], 0).is_none());
    }

    /// Fetches smaller than the stored batches go on inside a batch where the last one
    /// stopped, and across batches written between fetches; a consumer starting inside a
    /// batch steps over what comes before its position.
    #[tokio::test]
    async fn small_fetches_go_on_inside_large_batches() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LocalHub::open(dir.path().join("hub.db")).await.unwrap();
        hub.create_topic("t", 1).await.unwrap();
        let mut p = hub.producer("t").await.unwrap();
        let mut c = hub
            .consumer("t", 0, None, OffsetStart::Beginning)
            .await
            .unwrap();
        let (mut written, mut got) = (0usize, Vec::new());
        for round in 0..40usize {
            let n = (round * 7) % 50 + 1;
            let batch = (written..written + n)
                .map(|i| Record::new(i.to_string()).with_header("i", i.to_string()))
                .collect();
            p.send(Arc::new(batch)).await.unwrap();
            written += n;
            for r in c.fetch(round % 9 + 1, Duration::ZERO).await.unwrap() {
                got.push(r);
            }
        }
        loop {
            let more = c.fetch(4, Duration::ZERO).await.unwrap();
            if more.is_empty() {
                break;
            }
            got.extend(more);
        }
        assert_eq!(got.len(), written);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.record.value, i.to_string());
            assert_eq!(r.record.headers, [("i".into(), Bytes::from(i.to_string()))]);
        }
        let mut mid = hub
            .consumer("t", 0, None, OffsetStart::Absolute(3))
            .await
            .unwrap();
        let first = mid.fetch(2, Duration::ZERO).await.unwrap();
        assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(first[0].record.value, "3");
    }

    #[test]
    fn headers_round_trip() {
        let h = vec![
            ("a".to_string(), Bytes::from_static(b"1")),
            ("content-type".to_string(), Bytes::from_static(b"")),
        ];
        let mut buf = Vec::new();
        encode_headers(&h, &mut buf);
        assert_eq!(decode_headers(&buf), h);
    }

    /// Two connectors started at once on a new hub file raced to set it up, and the loser
    /// failed with "database is locked" (seen as a flaky mqtt test). Many at once now all
    /// open it.
    #[test]
    fn many_open_a_new_file_at_once() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("hub.db");
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || open_with_schema(&p).map(|_| ()))
                })
                .collect();
            for o in openers {
                assert!(o.join().unwrap().is_ok());
            }
        }
    }

    #[tokio::test]
    async fn empty_batches_and_deleted_topics_break_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LocalHub::open(dir.path().join("hub.db")).await.unwrap();
        hub.create_topic("a", 1).await.unwrap();
        let mut p = hub.producer("a").await.unwrap();
        assert_eq!(p.send(Arc::new(vec![])).await.unwrap(), 0);
        assert_eq!(p.send(Arc::new(vec![Record::new("x")])).await.unwrap(), 0);
        assert_eq!(p.send(Arc::new(vec![])).await.unwrap(), 1);

        // A consumer of a deleted topic never sees the records of a topic created after it.
        let mut old = hub
            .consumer("a", 0, None, OffsetStart::Beginning)
            .await
            .unwrap();
        hub.delete_topic("a").await.unwrap();
        hub.create_topic("b", 1).await.unwrap();
        let mut pb = hub.producer("b").await.unwrap();
        pb.send(Arc::new(vec![Record::new("of b")])).await.unwrap();
        assert!(old.fetch(10, Duration::ZERO).await.unwrap().is_empty());
    }

    /// A new hub file gets 16 KiB pages (batches are large blobs); opening it again keeps
    /// them.
    #[tokio::test]
    async fn a_new_hub_file_has_large_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let hub = LocalHub::open(path.clone()).await.unwrap();
        hub.create_topic("t", 1).await.unwrap();
        drop(hub);
        let c = open_conn(&path).map_err(|_| "open").unwrap();
        let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(size, 16384);
    }

    /// Batches queued without waiting are written in order, several to a transaction, each
    /// answered with its own first offset.
    #[tokio::test]
    async fn queued_batches_keep_their_order_through_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LocalHub::open(dir.path().join("hub.db")).await.unwrap();
        hub.create_topic("t", 1).await.unwrap();
        let p = hub.producer("t").await.unwrap();
        let mut next = 0;
        let mut queued = Vec::new();
        for b in 0..200 {
            let batch: Vec<Record> = (0..b % 7 + 1)
                .map(|_| {
                    next += 1;
                    Record::new(format!("{}", next - 1))
                })
                .collect();
            queued.push((batch.len() as i64, p.enqueue(&batch).unwrap()));
        }
        let mut want = 0;
        for (n, pending) in queued {
            assert_eq!(pending.await.unwrap(), want);
            want += n;
        }
        let mut c = hub
            .consumer("t", 0, None, OffsetStart::Beginning)
            .await
            .unwrap();
        let got = c.fetch(10_000, Duration::ZERO).await.unwrap();
        let values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.record.value.to_vec()).unwrap())
            .collect();
        assert_eq!(values, (0..next).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    /// Once a write fails, what was queued behind it is refused until a batch is sent again
    /// (a retry), so retrying in order keeps the topic's order.
    #[tokio::test]
    async fn a_failed_write_holds_back_the_batches_behind_it_until_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LocalHub::open(dir.path().join("hub.db")).await.unwrap();
        hub.create_topic("t", 1).await.unwrap();
        let mut p = hub.producer("t").await.unwrap();
        p.send(Arc::new(vec![Record::new("a")])).await.unwrap();
        hub.delete_topic("t").await.unwrap();
        let b = p.enqueue(&[Record::new("b")]).unwrap();
        let c = p.enqueue(&[Record::new("c")]).unwrap();
        assert!(matches!(b.await, Err(HubError::TopicNotFound(_))));
        assert!(c.await.is_err());
        hub.create_topic("t", 1).await.unwrap();
        let refused = p.enqueue(&[Record::new("d")]).unwrap().await.unwrap_err();
        assert!(
            refused.to_string().contains("an earlier batch failed"),
            "{refused}"
        );
        assert_eq!(p.send(Arc::new(vec![Record::new("b")])).await.unwrap(), 0);
        assert_eq!(p.enqueue(&[Record::new("c")]).unwrap().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn offsets_are_dense_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LocalHub::open(dir.path().join("hub.db")).await.unwrap();
        hub.create_topic("t", 1).await.unwrap();
        assert!(matches!(
            hub.create_topic("t", 1).await,
            Err(HubError::TopicExists(_))
        ));
        let mut p = hub.producer("t").await.unwrap();
        assert_eq!(
            p.send(Arc::new(vec![Record::new("a"), Record::new("b")]))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            p.send(Arc::new(vec![Record::new("c").with_key("k")]))
                .await
                .unwrap(),
            2
        );

        let mut c = hub
            .consumer("t", 0, Some("g"), OffsetStart::Beginning)
            .await
            .unwrap();
        let got = c.fetch(2, Duration::ZERO).await.unwrap();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1]);
        c.commit(2).await.unwrap();

        let mut c = hub
            .consumer("t", 0, Some("g"), OffsetStart::Beginning)
            .await
            .unwrap();
        let got = c.fetch(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].record.key.as_deref(), Some(&b"k"[..]));
        assert!(
            c.fetch(10, Duration::from_millis(30))
                .await
                .unwrap()
                .is_empty()
        );

        let mut end = hub
            .consumer("t", 0, None, OffsetStart::FromEnd(1))
            .await
            .unwrap();
        assert_eq!(end.fetch(10, Duration::ZERO).await.unwrap()[0].offset, 2);
    }
}

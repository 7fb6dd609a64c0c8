//! A source's durable place for its position in the outside system (a file offset, a
//! database cursor, a queue sequence), so a restarted source resumes where the hub's copy
//! ends.
//!
//! Positions are given with a record ([`crate::pipeline::SourceContext::send_at`]) and saved
//! only once the hub stored that record and every record sent before it: a restart, even
//! after `kill -9`, repeats at most what the hub stored since the last save, never skips.
//! The store is one JSON file per connector, beside the local hub by default
//! (`--state-dir`), replaced atomically (written aside, renamed) on each save.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// The checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint file {path} is not a checkpoint (remove it to start over)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Saved positions by key (a source picks its keys: one per file, per table, per stream).
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    values: Mutex<BTreeMap<String, Value>>,
}

impl CheckpointStore {
    /// Opens (or starts) the store at `path`; its directory is created.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let path = path.into();
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let values = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(CheckpointStore {
            path,
            values: Mutex::new(values),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved position under `key`, if there is one of that shape.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .get(key)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Every saved key.
    pub fn keys(&self) -> Vec<String> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.keys().cloned().collect()
    }

    /// Forgets `key` (the next save drops it), for positions of things that are gone.
    pub fn remove(&self, key: &str) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.remove(key);
    }

    fn set(&self, key: String, value: Value) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.insert(key, value);
    }

    /// Writes every position: to a file aside, then renamed over the old one, so a crash at
    /// any moment leaves the old file or the new one.
    pub fn save(&self) -> Result<(), CheckpointError> {
        let bytes = {
            let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_vec(&*values).expect("JSON values serialise")
        };
        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let mut aside = self.path.clone().into_os_string();
        aside.push(".tmp");
        let aside = PathBuf::from(aside);
        let mut f = std::fs::File::create(&aside).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        // Not synced: a crash of the process leaves the page cache, so the file survives
        // `kill -9` as it is; after a power cut a position may be older, which repeats
        // records and never skips them. Syncing each save would make saves lag the hub.
        std::fs::rename(&aside, &self.path).map_err(io)?;
        Ok(())
    }
}

/// A position waiting for its record to be stored.
pub(crate) struct Pending {
    /// `None` for a position given without a record: safe once those before it are.
    pub stored: Option<oneshot::Receiver<()>>,
    pub key: String,
    pub value: Value,
}

/// Where `send_at` queues positions, and the task that saves them once stored.
#[derive(Clone)]
pub(crate) struct Committer {
    pub store: Arc<CheckpointStore>,
    pub tx: mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the saving task; it ends (after a last save) once every sender is gone.
    pub fn start(
        store: Arc<CheckpointStore>,
        depth: usize,
    ) -> (Self, tokio::task::JoinHandle<Result<(), CheckpointError>>) {
        let (tx, rx) = mpsc::channel(depth.max(1));
        let task = tokio::spawn(commit_loop(store.clone(), rx));
        (Committer { store, tx }, task)
    }
}

/// Takes positions in the order they were sent, waits for each record to be stored, and
/// saves whatever became safe since the last save: saves follow the hub's pace, one per
/// stored batch or fewer while a save is slow, never per record.
async fn commit_loop(
    store: Arc<CheckpointStore>,
    mut rx: mpsc::Receiver<Pending>,
) -> Result<(), CheckpointError> {
    let mut dirty = false;
    let mut buf = Vec::new();
    loop {
        if rx.recv_many(&mut buf, 1024).await == 0 {
            break;
        }
        for p in buf.drain(..) {
            let stored = match p.stored {
                None => true,
                Some(mut ack) => match ack.try_recv() {
                    Ok(()) => true,
                    Err(oneshot::error::TryRecvError::Closed) => false,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        // Caught up with the hub: what is safe so far is saved before
                        // waiting for the next batch, so saves follow every stored batch.
                        if dirty {
                            save(&store).await?;
                            dirty = false;
                        }
                        ack.await.is_ok()
                    }
                },
            };
            if !stored {
                // The pipeline stopped before storing it: nothing from here on is safe.
                return finish(&store, dirty).await;
            }
            store.set(p.key, p.value);
            dirty = true;
        }
        if dirty && rx.is_empty() {
            save(&store).await?;
            dirty = false;
        }
    }
    finish(&store, dirty).await
}

async fn save(store: &Arc<CheckpointStore>) -> Result<(), CheckpointError> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.save())
        .await
        .expect("the checkpoint save does not panic")
}

async fn finish(store: &Arc<CheckpointStore>, dirty: bool) -> Result<(), CheckpointError> {
    match dirty {
        true => save(store).await,
        false => Ok(()),
    }
}

/// The value type positions are given as.
pub fn position<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn positions_are_saved_only_once_stored_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/c.checkpoint.json");
        let store = Arc::new(CheckpointStore::open(&path).unwrap());
        let (c, task) = Committer::start(store.clone(), 16);
        let (a_tx, a_rx) = oneshot::channel();
        let (b_tx, b_rx) = oneshot::channel();
        for (rx, v) in [(a_rx, 1), (b_rx, 2)] {
            c.tx.send(Pending {
                stored: Some(rx),
                key: "f".into(),
                value: Value::from(v),
            })
            .await
            .unwrap();
        }
        // The second record's ack comes first: nothing is saved before the first's.
        b_tx.send(()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!path.exists());
        a_tx.send(()).unwrap();
        drop(c);
        task.await.unwrap().unwrap();
        let again = CheckpointStore::open(&path).unwrap();
        assert_eq!(again.get::<i64>("f"), Some(2));
    }

    #[tokio::test]
    async fn an_unstored_record_stops_the_saves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let store = Arc::new(CheckpointStore::open(&path).unwrap());
        let (c, task) = Committer::start(store, 16);
        let (a_tx, a_rx) = oneshot::channel::<()>();
        c.tx.send(Pending {
            stored: Some(a_rx),
            key: "f".into(),
            value: Value::from(1),
        })
        .await
        .unwrap();
        drop(a_tx);
        drop(c);
        task.await.unwrap().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = CheckpointStore::open(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("remove it to start over"), "{e}");
    }
}

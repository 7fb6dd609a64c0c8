//! file-sink: writes a topic into files in a folder. Each batch is appended to the file
//! being written (`….part`) and, under `fsync: batch`, synced before its offsets are
//! committed. Files roll by size and by age; a finished file is synced and renamed to its
//! final name at once, so readers of the folder only ever see whole files.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use file_sink::{FileSink, FileSinkConfig, Fsync};
use runnel_codec::{Encoder, Framing};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};

fn main() -> ExitCode {
    app::batch_sink_main::<FileSink, _, _>(Files::new)
}

/// The protocol side: the writer, shared with the task that rolls files by age.
struct Files {
    writer: Arc<Mutex<Writer>>,
    framing: Framing,
    encoder: Encoder,
    ctx: SinkContext,
}

struct Writer {
    dir: PathBuf,
    prefix: String,
    suffix: String,
    roll_size: u64,
    roll_interval: Option<Duration>,
    fsync: Fsync,
    /// What starts every file (CSV's header row), framed.
    header: Vec<u8>,
    current: Option<Open>,
}

/// The file being written.
struct Open {
    file: File,
    part: PathBuf,
    size: u64,
    opened: Instant,
}

impl Files {
    fn new(config: &ConnectorConfig<FileSinkConfig>, ctx: &SinkContext) -> Result<Self, BoxError> {
        let c = &config.config;
        let dir = PathBuf::from(&c.path);
        let framing = c.framing()?;
        let encoder = Encoder::new(&c.format);
        let mut header = Vec::new();
        if let Some(h) = encoder.header() {
            framing.encode(&h, &mut header)?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("file.path {}: {e}", dir.display()))?;
        let mut writer = Writer {
            dir,
            prefix: c.prefix.clone(),
            suffix: c.suffix.clone(),
            roll_size: c.roll_size.0,
            roll_interval: c.roll_interval.map(|d| d.0),
            fsync: c.fsync,
            header,
            current: None,
        };
        writer.finish_leftovers()?;
        ctx.set_ready(true);
        let writer = Arc::new(Mutex::new(writer));
        if let Some(every) = c.roll_interval.map(|d| d.0) {
            tokio::spawn(roll_by_age(writer.clone(), every, ctx.clone()));
        }
        Ok(Files {
            writer,
            framing,
            encoder,
            ctx: ctx.clone(),
        })
    }
}

impl DeliverBatch for Files {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        let mut bytes = Vec::with_capacity(batch.iter().map(|r| r.record.value.len() + 1).sum());
        let mut rejected = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let id = format!("{}-{}-{}", r.topic, r.partition, r.offset);
            let framed = self
                .encoder
                .encode(&r.record, &id)
                .and_then(|payload| self.framing.encode(&payload, &mut bytes));
            if let Err(e) = framed {
                rejected.push((i, DeliveryError::permanent(runnel_runtime::chain(&e))));
            }
        }
        let first = batch[0].offset;
        let writer = self.writer.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
            w.append(first, &bytes)
        })
        .await
        .map_err(|e| DeliveryError::permanent(format!("the file writer failed: {e}")))?;
        match written {
            Ok(()) => {
                self.ctx.set_ready(true);
                Ok(rejected)
            }
            Err(e) => {
                self.ctx.set_ready(false);
                Err(DeliveryError::retryable(e))
            }
        }
    }
}

impl Writer {
    /// Appends a batch (records from offset `first` on), rolling first when it would make
    /// the file longer than `roll_size`; synced under `fsync: batch`. A write that fails
    /// is cut off again, so the retry does not leave half a batch behind.
    fn append(&mut self, first: i64, bytes: &[u8]) -> Result<(), String> {
        if let Some(open) = &self.current {
            let old = self
                .roll_interval
                .is_some_and(|d| open.opened.elapsed() >= d);
            if open.size > self.header.len() as u64
                && (open.size + bytes.len() as u64 > self.roll_size || old)
            {
                self.roll()?;
            }
        }
        if self.current.is_none() {
            let part = self
                .dir
                .join(format!("{}-{first:020}{}.part", self.prefix, self.suffix));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&part)
                .map_err(|e| io(&part, e))?;
            let mut size = file.metadata().map_err(|e| io(&part, e))?.len();
            if size == 0 && !self.header.is_empty() {
                (&file).write_all(&self.header).map_err(|e| io(&part, e))?;
                size = self.header.len() as u64;
            }
            self.current = Some(Open {
                file,
                part,
                size,
                opened: Instant::now(),
            });
        }
        let open = self.current.as_mut().expect("a file being written");
        let wrote = open.file.write_all(bytes).and_then(|()| match self.fsync {
            Fsync::Batch => open.file.sync_data(),
            Fsync::Never => Ok(()),
        });
        if let Err(e) = wrote {
            let _ = open.file.set_len(open.size);
            return Err(io(&open.part, e));
        }
        open.size += bytes.len() as u64;
        Ok(())
    }

    /// Finishes the file being written: synced, renamed to its final name, and the
    /// rename synced too (under `fsync: batch`).
    fn roll(&mut self) -> Result<(), String> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        if let Err(e) = open.file.sync_all() {
            let e = io(&open.part, e);
            self.current = Some(open);
            return Err(e);
        }
        finish(&open.part, self.fsync)?;
        tracing::info!(file = %done_name(&open.part).display(), bytes = open.size, "File finished.");
        Ok(())
    }

    /// A `.part` file left by a connector that stopped without finishing it: it holds
    /// records written before the stop, and is finished as it is. Records after the last
    /// commit come again and go into a new file.
    fn finish_leftovers(&mut self) -> Result<(), String> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&format!("{}-", self.prefix))
                && name.ends_with(&format!("{}.part", self.suffix))
            {
                let part = entry.path();
                finish(&part, Fsync::Batch)?;
                tracing::info!(file = %done_name(&part).display(), "Finished a file left by an earlier run.");
            }
        }
        Ok(())
    }
}

impl Drop for Writer {
    /// A connector that stops leaves no `.part` file behind.
    fn drop(&mut self) {
        if let Err(e) = self.roll() {
            tracing::warn!(error = %e, "Finishing the last file failed; the next start finishes it.");
        }
    }
}

async fn roll_by_age(writer: Arc<Mutex<Writer>>, every: Duration, ctx: SinkContext) {
    let tick = every.min(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = ctx.shutdown().wait() => return,
        }
        let writer = writer.clone();
        let rolled = tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
            match &w.current {
                Some(open)
                    if open.size > w.header.len() as u64 && open.opened.elapsed() >= every =>
                {
                    w.roll()
                }
                _ => Ok(()),
            }
        })
        .await;
        if let Ok(Err(e)) = rolled {
            tracing::warn!(error = %e, "Rolling the file by age failed; trying again with the next batch.");
        }
    }
}

fn finish(part: &Path, fsync: Fsync) -> Result<(), String> {
    let done = done_name(part);
    std::fs::rename(part, &done).map_err(|e| io(part, e))?;
    if let (Fsync::Batch, Some(dir)) = (fsync, done.parent()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    Ok(())
}

fn done_name(part: &Path) -> PathBuf {
    part.with_extension("")
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

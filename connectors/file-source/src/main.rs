//! file-source: reads a file or a glob of files into a topic. Followed files are polled for
//! appended data, rotation (a rename, then a new file at the path) and truncation; each file
//! is known by its device and inode, and its position is saved once the hub has the records
//! before it, so a restart (even after `kill -9`) resumes where the hub's copy ends.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use file_source::{FileSource, FileSourceConfig, ReadFrom};
use flate2::read::MultiGzDecoder;
use runnel_codec::{Decoder, Deframer, FormatKind, Frame, Framing, oversized_reason};
use runnel_runtime::{
    BoxError, Record, app, checkpoint::position, config::ConnectorConfig, pipeline::SourceContext,
};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// Bytes taken from the start of a file to tell it from another that reused its inode.
const HEAD: usize = 64;
/// One read.
const CHUNK: usize = 64 * 1024;
/// Reads of one file in a row before the others get their turn.
const TURN: usize = 256;

fn main() -> ExitCode {
    app::source_main::<FileSource, _, _>(run)
}

async fn run(
    config: Arc<ConnectorConfig<FileSourceConfig>>,
    ctx: SourceContext,
) -> Result<(), BoxError> {
    let handle = Handle::current();
    let framing = config.config.framing()?;
    tokio::task::spawn_blocking(move || Reader::new(&config.config, framing, ctx, handle).run())
        .await
        .map_err(|e| format!("the file reader failed: {e}"))?
}

/// A file's saved position.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    path: PathBuf,
    /// Bytes of its (decompressed) content already in the hub.
    offset: u64,
    /// Its first bytes, hex.
    head: String,
    /// Read to its end for good (a gzip file, or every file without follow).
    #[serde(default)]
    done: bool,
}

enum Input {
    Plain(File),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
}

struct Tracked {
    path: PathBuf,
    input: Input,
    offset: u64,
    head: String,
    deframer: Deframer,
    decoder: Decoder,
    /// The path no longer names it: read to its end, then let go.
    rotated: bool,
}

struct Reader<'a> {
    cfg: &'a FileSourceConfig,
    framing: Framing,
    ctx: SourceContext,
    rt: Handle,
    files: HashMap<String, Tracked>,
    /// Files read to their end for good in this run.
    finished: HashSet<String>,
    buf: Vec<u8>,
}

impl<'a> Reader<'a> {
    fn new(cfg: &'a FileSourceConfig, framing: Framing, ctx: SourceContext, rt: Handle) -> Self {
        Reader {
            cfg,
            framing,
            ctx,
            rt,
            files: HashMap::new(),
            finished: HashSet::new(),
            buf: vec![0; CHUNK],
        }
    }

    fn run(&mut self) -> Result<(), BoxError> {
        self.scan(true)?;
        // Ready once the files can be listed; a file that cannot be read stops the source.
        self.ctx.health().set_upstream(true);
        let mut scanned = Instant::now();
        loop {
            let mut progressed = false;
            let keys: Vec<String> = self.files.keys().cloned().collect();
            for key in keys {
                if self.ctx.shutdown().is_triggered() {
                    return Ok(());
                }
                progressed |= self.read_turn(&key)?;
            }
            if !self.cfg.follow && self.files.is_empty() {
                tracing::info!(
                    files = self.finished.len(),
                    "Every file was read to its end (follow is false)."
                );
                return Ok(());
            }
            if !progressed {
                let (poll, shutdown) = (self.cfg.poll_interval.0, self.ctx.shutdown().clone());
                self.rt.block_on(async {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.wait() => {}
                    }
                });
            }
            if self.cfg.follow && (!progressed || scanned.elapsed() >= self.cfg.poll_interval.0) {
                self.scan(false)?;
                scanned = Instant::now();
            }
        }
    }

    /// Matches the glob: new files are opened; tracked files it no longer finds were
    /// rotated away (or deleted) and are read to their end.
    fn scan(&mut self, first: bool) -> Result<(), BoxError> {
        let mut seen = HashSet::new();
        let paths = glob::glob(&self.cfg.path).map_err(|e| format!("file.path: {e}"))?;
        for path in paths.flatten() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = format!("{}:{}", meta.dev(), meta.ino());
            seen.insert(key.clone());
            if let Some(t) = self.files.get_mut(&key) {
                t.path = path;
                t.rotated = false;
            } else if !self.finished.contains(&key) {
                if let Some(t) = self.open(&path, &key, meta.len(), first)? {
                    self.files.insert(key, t);
                } else {
                    self.finished.insert(key);
                }
            }
        }
        for (key, t) in &mut self.files {
            if !seen.contains(key) && !t.rotated {
                tracing::info!(path = %t.path.display(), "The file was rotated or removed; reading it to its end.");
                t.rotated = true;
            }
        }
        if first {
            // Positions of files that are gone are dropped with the next save.
            if let Some(store) = self.ctx.checkpoints() {
                store
                    .keys()
                    .iter()
                    .filter(|k| !seen.contains(*k))
                    .for_each(|k| store.remove(k));
            }
        }
        Ok(())
    }

    /// Opens a file at its saved position, or where `read_from` says; `None` when it was
    /// read to its end for good before.
    fn open(
        &self,
        path: &Path,
        key: &str,
        len: u64,
        first: bool,
    ) -> Result<Option<Tracked>, BoxError> {
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = File::open(path).map_err(io)?;
        let mut head = vec![0; HEAD];
        let n = read_full(&mut file, &mut head).map_err(io)?;
        let head = hex(&head[..n]);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let gzip = path.extension().is_some_and(|e| e == "gz");
        let saved = self
            .ctx
            .checkpoints()
            .and_then(|s| s.get::<Saved>(key))
            .filter(|s| head.starts_with(&s.head) && !s.head.is_empty());
        let mut offset = match &saved {
            Some(s) if s.done => return Ok(None),
            Some(s) if !gzip && s.offset > len => {
                tracing::warn!(path = %path.display(), saved = s.offset, size = len, "The file is shorter than its saved position (truncated while stopped); reading it from the beginning.");
                0
            }
            Some(s) => s.offset,
            None if first && !gzip && self.cfg.read_from == ReadFrom::End => len,
            None => 0,
        };
        let input = if gzip {
            let mut gz = Box::new(MultiGzDecoder::new(BufReader::new(file)));
            let skipped =
                std::io::copy(&mut (&mut *gz).take(offset), &mut std::io::sink()).map_err(io)?;
            offset = skipped;
            Input::Gzip(gz)
        } else {
            file.seek(SeekFrom::Start(offset)).map_err(io)?;
            Input::Plain(file)
        };
        tracing::info!(path = %path.display(), offset, "Reading the file.");
        let deframer = Deframer::new(self.framing.clone(), self.cfg.max_record_size.0);
        let mut decoder = Decoder::new(&self.cfg.format);
        if offset > 0 && self.cfg.format.kind == FormatKind::Csv && self.cfg.format.csv.header {
            // Resuming past the header row: it still names the columns.
            self.header_row(path, gzip, &mut decoder)?;
        }
        Ok(Some(Tracked {
            path: path.to_path_buf(),
            input,
            offset,
            head,
            deframer,
            decoder,
            rotated: false,
        }))
    }

    /// Reads a CSV file's first row into `decoder`.
    fn header_row(&self, path: &Path, gzip: bool, decoder: &mut Decoder) -> Result<(), BoxError> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut input: Box<dyn Read> = match gzip {
            true => Box::new(MultiGzDecoder::new(BufReader::new(file))),
            false => Box::new(file),
        };
        let mut d = Deframer::new(self.framing.clone(), self.cfg.max_record_size.0);
        let mut buf = vec![0; 4096];
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            d.push(&buf[..n]);
            if let Some(Frame::Record(row)) = d
                .next_frame()
                .or_else(|| (n == 0).then(|| d.finish()).flatten())
            {
                decoder.decode(row, "").map_err(|e| {
                    format!(
                        "{}: the header row: {}",
                        path.display(),
                        runnel_runtime::Chain(&e)
                    )
                })?;
                return Ok(());
            }
            if n == 0 {
                return Err(format!("{}: no header row", path.display()).into());
            }
        }
    }

    /// Reads what the file has now (up to a turn's worth); at its end a file that is not
    /// followed (gzip, rotated, or follow false) is finished, a followed one is checked for
    /// truncation. Whether anything was read.
    fn read_turn(&mut self, key: &str) -> Result<bool, BoxError> {
        let follow = self.cfg.follow;
        let t = self.files.get_mut(key).expect("a tracked file");
        let mut progressed = false;
        for _ in 0..TURN {
            let n = match &mut t.input {
                Input::Plain(f) => f.read(&mut self.buf),
                Input::Gzip(g) => g.read(&mut self.buf),
            };
            let n = n.map_err(|e| format!("{}: {e}", t.path.display()))?;
            if n == 0 {
                break;
            }
            progressed = true;
            t.offset += n as u64;
            t.deframer.push(&self.buf[..n]);
            let mut records = Vec::new();
            while let Some(frame) = t.deframer.next_frame() {
                let end = t.offset - t.deframer.buffered() as u64;
                decoded(frame, t, key, end, self.cfg, &self.ctx, &mut records);
            }
            let at = (!t.deframer.is_discarding()).then(|| t.offset - t.deframer.buffered() as u64);
            send(&self.rt, &self.ctx, key, t, records, at, false)?;
            if self.ctx.shutdown().is_triggered() {
                return Ok(true);
            }
        }
        if progressed {
            return Ok(true);
        }
        let ends = matches!(t.input, Input::Gzip(_)) || t.rotated || !follow;
        if ends {
            let mut records = Vec::new();
            if let Some(frame) = t.deframer.finish() {
                let end = t.offset;
                decoded(frame, t, key, end, self.cfg, &self.ctx, &mut records);
            }
            // A file let go because it moved keeps no position; one read for good keeps its end.
            let done = !t.rotated;
            send(&self.rt, &self.ctx, key, t, records, Some(t.offset), done)?;
            tracing::info!(path = %t.path.display(), bytes = t.offset, "Read the file to its end.");
            self.files.remove(key);
            if done {
                self.finished.insert(key.to_string());
            }
        } else if let Input::Plain(f) = &mut t.input {
            let len = f
                .metadata()
                .map_err(|e| format!("{}: {e}", t.path.display()))?
                .len();
            if len < t.offset {
                tracing::warn!(path = %t.path.display(), was = t.offset, size = len, "The file was truncated; reading it again from the beginning.");
                f.seek(SeekFrom::Start(0))
                    .map_err(|e| format!("{}: {e}", t.path.display()))?;
                t.offset = 0;
                t.deframer = Deframer::new(self.framing.clone(), self.cfg.max_record_size.0);
                t.decoder = Decoder::new(&self.cfg.format);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The records of a frame ending at offset `end`, decoded; an oversized frame, or one that
/// does not decode, is skipped with the reason (its size) in a log line and counted.
#[allow(clippy::too_many_arguments)]
fn decoded(
    frame: Frame,
    t: &mut Tracked,
    key: &str,
    end: u64,
    cfg: &FileSourceConfig,
    ctx: &SourceContext,
    out: &mut Vec<Record>,
) {
    let reason = match frame {
        Frame::Record(v) => {
            let mut pieces = Vec::new();
            let decoded = t
                .decoder
                .decode_into(v, || format!("{key}@{end}"), &mut pieces);
            for d in pieces {
                let mut r = Record::new(d.value);
                r.headers = d.headers;
                if let Some(h) = &cfg.path_header {
                    r = r.with_header(h.clone(), Bytes::from(t.path.display().to_string()));
                }
                out.push(r);
            }
            match decoded {
                Ok(()) => return,
                Err(e) => format!(
                    "the record ending at byte {end} does not decode: {}",
                    runnel_runtime::Chain(&e)
                ),
            }
        }
        Frame::Oversized { size, complete } => oversized_reason(size, complete, t.deframer.max()),
        Frame::Truncated { size, expected } => format!(
            "the file ends inside a length-prefixed record: {size} of its {expected} bytes came"
        ),
    };
    ctx.metrics().records_failed.inc();
    tracing::warn!(path = %t.path.display(), %reason, "Record skipped.");
}

/// Hands a read's records on, the position after them with the last (or alone when the
/// read completed none, so a skipped oversized record is not read again).
fn send(
    rt: &Handle,
    ctx: &SourceContext,
    key: &str,
    t: &Tracked,
    mut records: Vec<Record>,
    at: Option<u64>,
    done: bool,
) -> Result<(), BoxError> {
    let saved = at.map(|offset| {
        position(&Saved {
            path: t.path.clone(),
            offset,
            head: t.head.clone(),
            done,
        })
    });
    let last = records.pop();
    rt.block_on(async {
        ctx.send_many(records).await?;
        match (last, saved) {
            (Some(r), Some(p)) => ctx.send_at(r, key, p).await,
            (Some(r), None) => ctx.send(r).await,
            (None, Some(p)) => ctx.save_at(key, p).await,
            (None, None) => Ok(()),
        }
    })?;
    Ok(())
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! A chain of SmartModule instances sharing one store, with the limits applied.

use std::collections::BTreeMap;

use bytes::Bytes;
use wasmtime::{Caller, Linker, Store, Trap, TypedFunc};

use crate::abi::{self, Output, RecordView};
use crate::engine::{Engine, Limits, TICK};
use crate::error::{CallError, LoadError, MemoryCapHit, transform_status};
use crate::module::{COPY_RECORDS, Kind, Module};

/// Parameters a module's `init` receives (a transform's `with:` map).
pub type Params = BTreeMap<String, String>;

struct State {
    wasi: wasi_common::WasiCtx,
    /// Where the module said its output is, through `copy_records`.
    output: Option<(i32, i32)>,
    max_memory: u64,
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_memory {
            return Err(MemoryCapHit {
                requested: desired as u64,
                limit: self.max_memory,
            }
            .into());
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000 && maximum.is_none_or(|m| desired <= m))
    }
}

struct Live {
    memory: wasmtime::Memory,
    alloc: TypedFunc<i32, i32>,
    dealloc: Option<TypedFunc<(i32, i32), ()>>,
    transform: TypedFunc<(i32, i32, i32), i32>,
}

struct Step {
    module: Module,
    params: Params,
    live: Option<Live>,
    /// An aggregate's state, kept by the host so it survives a rebuilt instance.
    accumulator: Bytes,
}

/// Collects the modules of a chain before it is instantiated.
#[derive(Debug)]
pub struct ChainBuilder {
    engine: Engine,
    limits: Limits,
    steps: Vec<(Module, Params)>,
}

impl ChainBuilder {
    pub fn new(engine: &Engine, limits: Limits) -> Self {
        ChainBuilder {
            engine: engine.clone(),
            limits,
            steps: Vec::new(),
        }
    }

    pub fn add(&mut self, module: Module, params: Params) -> &mut Self {
        self.steps.push((module, params));
        self
    }

    /// Instantiates every module in one store and runs their `init`.
    pub fn build(self) -> Result<Chain, LoadError> {
        let mut linker: Linker<State> = Linker::new(&self.engine.inner);
        wasi_common::sync::add_to_linker(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        linker
            .func_wrap(
                "env",
                COPY_RECORDS,
                |mut caller: Caller<'_, State>, ptr: i32, len: i32| {
                    caller.data_mut().output = Some((ptr, len));
                },
            )
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut chain = Chain {
            store: new_store(&self.engine, &self.limits),
            engine: self.engine,
            limits: self.limits,
            linker,
            steps: self
                .steps
                .into_iter()
                .map(|(module, params)| Step {
                    module,
                    params,
                    live: None,
                    accumulator: Bytes::new(),
                })
                .collect(),
            buf: Vec::new(),
            poisoned: false,
            stats: Stats::default(),
        };
        chain.instantiate()?;
        Ok(chain)
    }
}

fn new_store(engine: &Engine, limits: &Limits) -> Store<State> {
    // WASI gets stdout and stderr, both sent to the host's stderr so that a module's
    // prints never mix with records; no files, no sockets, no environment, no arguments.
    let wasi = wasi_common::sync::WasiCtxBuilder::new()
        .stdout(Box::new(wasi_common::sync::stdio::stderr()))
        .inherit_stderr()
        .build();
    let mut store = Store::new(
        &engine.inner,
        State {
            wasi,
            output: None,
            max_memory: limits.max_memory,
        },
    );
    store.limiter(|s| s);
    store.epoch_deadline_trap();
    store
}

/// A record a chain produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The input record it came from, when the modules kept track (array_map starts new
    /// records, so its outputs have none).
    pub source: Option<usize>,
}

impl RecordView for Produced {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
    fn timestamp(&self) -> i64 {
        self.timestamp
    }
}

/// Why a record did not make it through a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The module returned an error for this record.
    Module { module: String, hint: String },
    /// The module failed as a whole (time or memory limit, trap) on this record alone.
    Call(CallError),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Module { module, hint } => write!(f, "{module}: {}", hint.trim_end()),
            Reason::Call(e) => e.fmt(f),
        }
    }
}

/// A record a chain rejected, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The input record it came from, when known.
    pub source: Option<usize>,
    /// The record as the failing module saw it.
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub reason: Reason,
}

/// What [`Chain::process`] made of a batch: every input record is either behind some
/// output, dropped by a filter, or rejected; none is lost.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Processed {
    pub records: Vec<Produced>,
    pub rejected: Vec<Rejected>,
}

/// Instances of a chain's modules in one store. Not shared between threads: give each
/// worker its own chain.
pub struct Chain {
    engine: Engine,
    limits: Limits,
    linker: Linker<State>,
    store: Store<State>,
    steps: Vec<Step>,
    buf: Vec<u8>,
    poisoned: bool,
    stats: Stats,
}

/// Counters of a chain's calls into its modules, for metrics and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Calls into a module's transform (each with its `alloc` and `dealloc`).
    pub calls: u64,
    /// Time spent inside the modules: writing the input, `alloc`, the transform, reading
    /// the output and `dealloc`. What is left of a batch's time is the host's encoding
    /// and decoding.
    pub guest_time: std::time::Duration,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("modules", &self.modules())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// The modules' names, in order.
    pub fn modules(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.module.name()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// What the chain's calls cost so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The linear memory all instances hold now, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.steps
            .iter()
            .filter_map(|s| s.live.as_ref())
            .map(|l| l.memory.data_size(&self.store) as u64)
            .sum()
    }

    /// A fresh store with every module instantiated and initialised; aggregate state is
    /// kept. Used at build time and after a call failed as a whole.
    fn instantiate(&mut self) -> Result<(), LoadError> {
        self.store = new_store(&self.engine, &self.limits);
        for i in 0..self.steps.len() {
            let live = self.instantiate_step(i)?;
            self.steps[i].live = Some(live);
        }
        self.poisoned = false;
        Ok(())
    }

    fn instantiate_step(&mut self, i: usize) -> Result<Live, LoadError> {
        let step = &self.steps[i];
        let name = step.module.name.clone();
        let inst_err = |e: wasmtime::Error| LoadError::Instantiate {
            name: name.clone(),
            reason: classify(&name, e, &self.limits).to_string(),
        };
        self.store.set_epoch_deadline(deadline_ticks(&self.limits));
        let instance = self
            .linker
            .instantiate(&mut self.store, &step.module.module)
            .map_err(&inst_err)?;
        // A WASI reactor asks to be initialised once before any other export is used.
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut self.store, "_initialize") {
            init.call(&mut self.store, ()).map_err(&inst_err)?;
        }
        let abi = |detail: String| LoadError::Abi {
            name: name.clone(),
            detail,
        };
        let memory = instance
            .get_memory(&mut self.store, "memory")
            .ok_or_else(|| abi("no memory export".into()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut self.store, "alloc")
            .map_err(|e| abi(format!("alloc: {e}")))?;
        let dealloc = if step.module.has_dealloc {
            instance
                .get_typed_func::<(i32, i32), ()>(&mut self.store, "dealloc")
                .ok()
        } else {
            None
        };
        let transform = instance
            .get_typed_func::<(i32, i32, i32), i32>(&mut self.store, step.module.kind.export())
            .map_err(|e| abi(format!("{}: {e}", step.module.kind)))?;
        let live = Live {
            memory,
            alloc,
            dealloc,
            transform,
        };
        if step.module.has_init {
            let init = instance
                .get_typed_func::<(i32, i32, i32), i32>(&mut self.store, "init")
                .map_err(|e| abi(format!("init: {e}")))?;
            let input = abi::encode_init(&step.params).map_err(|e| abi(e.to_string()))?;
            let (rc, out) =
                self.raw_call(&live, &init, &input, &name)
                    .map_err(|e| LoadError::Init {
                        name: name.clone(),
                        hint: e.to_string(),
                    })?;
            if rc < 0 {
                use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInitErrorStatus as S;
                let hint = match (S::try_from(rc), out) {
                    (Ok(S::InitError), Some(bytes)) => abi::decode_init_error(&bytes)
                        .unwrap_or_else(|e| format!("init error that does not decode: {e}")),
                    (Ok(s), _) => s.to_string(),
                    (Err(_), _) => format!("init returned unknown error code {rc}"),
                };
                return Err(LoadError::Init {
                    name,
                    hint: hint.trim_end().to_string(),
                });
            }
        }
        Ok(live)
    }

    /// Writes `input` into the guest, calls `f`, and takes back what the guest handed to
    /// `copy_records` (and frees it in the guest when the module exports `dealloc`).
    fn raw_call(
        &mut self,
        live: &Live,
        f: &TypedFunc<(i32, i32, i32), i32>,
        input: &[u8],
        name: &str,
    ) -> Result<(i32, Option<Bytes>), CallError> {
        let abi = |detail: String| CallError::Abi {
            module: name.to_string(),
            detail,
        };
        let store = &mut self.store;
        store.data_mut().output = None;
        store.set_epoch_deadline(deadline_ticks(&self.limits));
        let len = i32::try_from(input.len()).map_err(|_| abi("input larger than 2 GiB".into()))?;
        let ptr = live
            .alloc
            .call(&mut *store, len)
            .map_err(|e| classify(name, e, &self.limits))?;
        live.memory
            .write(&mut *store, ptr as u32 as usize, input)
            .map_err(|_| abi(format!("alloc returned {ptr}, outside the module's memory")))?;
        let rc = f
            .call(&mut *store, (ptr, len, abi::VERSION as i32))
            .map_err(|e| classify(name, e, &self.limits))?;
        let Some((optr, olen)) = store.data_mut().output.take() else {
            return Ok((rc, None));
        };
        let (start, n) = (optr as u32 as usize, olen as u32 as usize);
        let bytes = live
            .memory
            .data(&*store)
            .get(start..start.saturating_add(n))
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| {
                abi(format!(
                    "copy_records({optr}, {olen}) is outside the module's memory"
                ))
            })?;
        if let Some(dealloc) = &live.dealloc
            && let Some(size) = freeable_size(live.memory.data(&*store), start, n)
        {
            dealloc
                .call(&mut *store, (optr, size as i32))
                .map_err(|e| classify(name, e, &self.limits))?;
        }
        Ok((rc, Some(bytes)))
    }

    /// One call into step `i` with the input already in `self.buf`.
    fn call_step(&mut self, i: usize) -> Result<Output, CallError> {
        if self.poisoned {
            self.instantiate().map_err(|e| CallError::Reinstantiate {
                module: self.steps[i].module.name.clone(),
                reason: e.to_string(),
            })?;
        }
        let step = &mut self.steps[i];
        let name = step.module.name.clone();
        let aggregate = step.module.kind == Kind::Aggregate;
        if aggregate {
            abi::append_accumulator(&mut self.buf, &step.accumulator);
        }
        let Some(live) = step.live.take() else {
            return Err(CallError::Reinstantiate {
                module: name,
                reason: "module is not instantiated".into(),
            });
        };
        let input = std::mem::take(&mut self.buf);
        let started = std::time::Instant::now();
        let result = self.raw_call(&live, &live.transform, &input, &name);
        self.stats.calls += 1;
        self.stats.guest_time += started.elapsed();
        self.buf = input;
        self.steps[i].live = Some(live);
        let (rc, out) = match result {
            Ok(r) => r,
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        };
        if rc < 0 {
            // The guest gave up before producing an output; its heap is still sound.
            return Err(CallError::Engine {
                module: name,
                code: rc,
                meaning: transform_status(rc),
            });
        }
        let Some(out) = out else {
            self.poisoned = true;
            return Err(CallError::Abi {
                module: name,
                detail: "the module returned without calling copy_records".into(),
            });
        };
        let output = abi::decode_output(out, aggregate).map_err(|e| {
            self.poisoned = true;
            CallError::Abi {
                module: name.clone(),
                detail: format!("its output does not decode: {e}"),
            }
        })?;
        if let Some(acc) = &output.accumulator {
            self.steps[i].accumulator = acc.clone();
        }
        Ok(output)
    }

    /// Runs the chain once over `records`, as Fluvio's engine does: each module gets one
    /// call with the previous module's successes, and the first module that reports an
    /// error ends the run with its partial output and that error.
    pub fn call_once<R: RecordView>(
        &mut self,
        records: &[R],
        base_offset: i64,
        base_timestamp: i64,
    ) -> Result<Output, CallError> {
        if self.steps.is_empty() {
            let successes = records
                .iter()
                .enumerate()
                .map(|(i, r)| abi::OutRecord {
                    key: r.key().map(Bytes::copy_from_slice),
                    value: Bytes::copy_from_slice(r.value()),
                    offset_delta: i as i64,
                    timestamp_delta: r.timestamp() - base_timestamp,
                })
                .collect();
            return Ok(Output {
                successes,
                ..Output::default()
            });
        }
        abi::encode_input(&mut self.buf, records, base_offset, base_timestamp)
            .map_err(|e| self.abi_error(0, e))?;
        let mut out = self.call_step(0)?;
        for i in 1..self.steps.len() {
            if out.error.is_some() {
                return Ok(out);
            }
            abi::encode_out_records(&mut self.buf, &out.successes, base_offset, base_timestamp)
                .map_err(|e| self.abi_error(i, e))?;
            out = self.call_step(i)?;
        }
        Ok(out)
    }

    fn abi_error(&self, i: usize, e: std::io::Error) -> CallError {
        CallError::Abi {
            module: self.steps[i].module.name.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs the chain over a batch so that nothing is lost: a record a module reports an
    /// error for is rejected and the rest of the batch goes on; when a call fails as a
    /// whole (time or memory limit, trap), the instances are rebuilt and the records are
    /// tried one by one, so only the records that fail alone are rejected.
    pub fn process<R: RecordView>(&mut self, records: &[R]) -> Processed {
        let base_ts = records.first().map_or(0, RecordView::timestamp);
        let mut result = Processed::default();
        if self.steps.is_empty() {
            result.records = records
                .iter()
                .enumerate()
                .map(|(i, r)| Produced {
                    key: r.key().map(Bytes::copy_from_slice),
                    value: Bytes::copy_from_slice(r.value()),
                    timestamp: r.timestamp(),
                    source: Some(i),
                })
                .collect();
            return result;
        }
        let sources: Vec<Option<usize>> = (0..records.len()).map(Some).collect();
        let mut current = self.run_step(0, records, &sources, base_ts, &mut result.rejected);
        for i in 1..self.steps.len() {
            if current.is_empty() {
                break;
            }
            let sources: Vec<Option<usize>> = current.iter().map(|p| p.source).collect();
            current = self.run_step(i, &current, &sources, base_ts, &mut result.rejected);
        }
        result.records = current;
        result
    }

    fn run_step<R: RecordView>(
        &mut self,
        i: usize,
        items: &[R],
        sources: &[Option<usize>],
        base_ts: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Vec<Produced> {
        let mut out = Vec::with_capacity(items.len());
        let mut start = 0;
        while start < items.len() {
            let chunk = &items[start..];
            match self.call_chunk(i, chunk, &sources[start..], base_ts, &mut out) {
                Ok(None) => break,
                Ok(Some((p, reason, key, value))) => {
                    rejected.push(Rejected {
                        source: sources[start + p],
                        key,
                        value,
                        reason,
                    });
                    start += p + 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = chunk.len(), "a SmartModule call failed; retrying its records one at a time");
                    for (j, item) in chunk.iter().enumerate() {
                        let one = std::slice::from_ref(item);
                        let src = &sources[start + j..start + j + 1];
                        let reject = |reason| Rejected {
                            source: src[0],
                            key: item.key().map(Bytes::copy_from_slice),
                            value: Bytes::copy_from_slice(item.value()),
                            reason,
                        };
                        match self.call_chunk(i, one, src, base_ts, &mut out) {
                            Ok(None) => {}
                            Ok(Some((_, reason, key, value))) => rejected.push(Rejected {
                                key,
                                value,
                                ..reject(reason)
                            }),
                            Err(e) => rejected.push(reject(Reason::Call(e))),
                        }
                    }
                    break;
                }
            }
        }
        out
    }

    /// One call of step `i` on `chunk`; successes go to `out`. Returns the position,
    /// reason and record of a record the module reported an error for.
    #[allow(clippy::type_complexity)]
    fn call_chunk<R: RecordView>(
        &mut self,
        i: usize,
        chunk: &[R],
        sources: &[Option<usize>],
        base_ts: i64,
        out: &mut Vec<Produced>,
    ) -> Result<Option<(usize, Reason, Option<Bytes>, Bytes)>, CallError> {
        abi::encode_input(&mut self.buf, chunk, 0, base_ts).map_err(|e| self.abi_error(i, e))?;
        let output = self.call_step(i)?;
        let keeps_identity = self.steps[i].module.kind != Kind::ArrayMap;
        for o in output.successes {
            let source = if keeps_identity {
                usize::try_from(o.offset_delta)
                    .ok()
                    .and_then(|d| sources.get(d).copied().flatten())
            } else {
                None
            };
            out.push(Produced {
                key: o.key,
                value: o.value,
                timestamp: base_ts + o.timestamp_delta,
                source,
            });
        }
        let Some(err) = output.error else {
            return Ok(None);
        };
        let name = self.steps[i].module.name.clone();
        match usize::try_from(err.offset)
            .ok()
            .filter(|p| *p < chunk.len())
        {
            Some(p) => Ok(Some((
                p,
                Reason::Module {
                    module: name,
                    hint: err.hint,
                },
                err.key,
                err.value,
            ))),
            None => {
                self.poisoned = true;
                Err(CallError::Abi {
                    module: name,
                    detail: format!(
                        "it reported an error at offset {}, outside its input of {} records",
                        err.offset,
                        chunk.len()
                    ),
                })
            }
        }
    }
}

/// The size to hand the SDK's `dealloc` for an output buffer of `len` bytes at `ptr`.
///
/// The SDK encodes its output into a `Vec` and forgets it, so only the length crosses the
/// boundary, not the capacity; and Rust's wasm allocator (dlmalloc) checks on free that
/// the size it is given matches the block. The block's real size is in the allocator's
/// chunk header, the word before the buffer (size with the low three bits as flags, bit 1
/// meaning in use). When the header looks like an in-use dlmalloc chunk that can hold
/// this buffer, the buffer is freed with the size that chunk was allocated for; when it
/// does not (a module with another allocator), the buffer is left alone, as Fluvio's
/// engine leaves every one.
fn freeable_size(mem: &[u8], ptr: usize, len: usize) -> Option<usize> {
    const CINUSE: u32 = 2;
    const OVERHEAD: usize = 4;
    let head = mem.get(ptr.checked_sub(4)?..ptr)?;
    let head = u32::from_le_bytes(head.try_into().ok()?);
    let chunk = (head & !7) as usize;
    let plausible = head & CINUSE != 0
        && chunk >= len + OVERHEAD
        && chunk <= len.saturating_mul(2) + 64
        && ptr.is_multiple_of(8);
    plausible.then(|| chunk - OVERHEAD)
}

fn deadline_ticks(limits: &Limits) -> u64 {
    (limits.call_timeout.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}

/// Names what stopped a call: the time limit, the memory limit, or a trap.
fn classify(module: &str, e: wasmtime::Error, limits: &Limits) -> CallError {
    if let Some(cap) = e.downcast_ref::<MemoryCapHit>() {
        return CallError::MemoryLimit {
            module: module.into(),
            requested: cap.requested,
            limit: cap.limit,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout {
            module: module.into(),
            budget: limits.call_timeout,
        },
        Some(trap) => CallError::Trap {
            module: module.into(),
            message: trap.to_string(),
        },
        None => CallError::Trap {
            module: module.into(),
            message: format!("{e:#}"),
        },
    }
}

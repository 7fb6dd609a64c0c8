//! Runs WASM SmartModules built with Fluvio's SDK (`fluvio-smartmodule` 0.50) in wasmtime,
//! with the same ABI and the same results as Fluvio's engine, and with limits that hold:
//! a time limit per call that stops a module stuck in a loop, a cap on linear memory, no
//! memory growth across calls (output buffers are freed), checks at load time, and a
//! cache of compiled modules on disk.
//!
//! ```no_run
//! use smartmodule_host::{ChainBuilder, Engine, EngineConfig, Limits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(EngineConfig::default())?;
//! let filter = engine.load_file("json_filter.wasm".as_ref())?;
//! let mut builder = ChainBuilder::new(&engine, Limits::default());
//! builder.add(filter, [("field".into(), "kind".into()), ("value".into(), "a".into())].into());
//! let mut chain = builder.build()?;
//! # Ok(()) }
//! ```

pub mod abi;
mod chain;
mod engine;
mod error;
mod module;

pub use abi::{OutRecord, Output, RecordView, UserError};
pub use chain::{Chain, ChainBuilder, Params, Processed, Produced, Reason, Rejected, Stats};
pub use engine::{Engine, EngineConfig, Limits, TICK};
pub use error::{CallError, LoadError};
pub use module::{Kind, Module};

//! What can go wrong, told apart: refused at load time, stopped by a limit, broken by the
//! module (a trap or an engine error code), or a record the module itself rejected.

use std::path::PathBuf;
use std::time::Duration;

/// A module that cannot be used, found out before any record reaches it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: not a WebAssembly module (the file does not start with \\0asm)")]
    NotWasm { name: String },
    #[error("{name}: corrupt WebAssembly module: {reason}")]
    Corrupt { name: String, reason: String },
    #[error(
        "{name}: no SmartModule export: expected one of filter, map, filter_map, array_map, aggregate; the module exports {exports}"
    )]
    NoTransform { name: String, exports: String },
    #[error("{name}: ABI mismatch: {detail}")]
    Abi { name: String, detail: String },
    #[error("{name}: instantiation failed: {reason}")]
    Instantiate { name: String, reason: String },
    #[error("{name}: init failed: {hint}")]
    Init { name: String, hint: String },
    #[error("{0}")]
    Engine(String),
}

/// A call that failed as a whole: the module did not return an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{module}: stopped after {budget:?}: the module ran past its time limit")]
    Timeout { module: String, budget: Duration },
    #[error(
        "{module}: memory limit: the module asked for {requested} bytes of linear memory, the limit is {limit}"
    )]
    MemoryLimit {
        module: String,
        requested: u64,
        limit: u64,
    },
    #[error("{module}: trapped: {message}")]
    Trap { module: String, message: String },
    #[error("{module}: engine error {code}: {meaning}")]
    Engine {
        module: String,
        code: i32,
        meaning: String,
    },
    #[error("{module}: ABI error: {detail}")]
    Abi { module: String, detail: String },
    #[error("{module}: {reason}")]
    Reinstantiate { module: String, reason: String },
}

impl CallError {
    /// The module the error names.
    pub fn module(&self) -> &str {
        match self {
            CallError::Timeout { module, .. }
            | CallError::MemoryLimit { module, .. }
            | CallError::Trap { module, .. }
            | CallError::Engine { module, .. }
            | CallError::Abi { module, .. }
            | CallError::Reinstantiate { module, .. } => module,
        }
    }
}

/// Returned by the memory limiter; the host recognises it after the trap it causes.
#[derive(Debug, thiserror::Error)]
#[error("linear memory limit of {limit} bytes reached (asked for {requested})")]
pub(crate) struct MemoryCapHit {
    pub requested: u64,
    pub limit: u64,
}

pub(crate) fn transform_status(code: i32) -> String {
    use fluvio_smartmodule::dataplane::smartmodule::SmartModuleTransformErrorStatus as S;
    match S::try_from(code) {
        Ok(s) => s.to_string(),
        Err(_) => "unknown error code".to_string(),
    }
}

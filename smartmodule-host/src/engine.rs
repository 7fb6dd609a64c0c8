//! The wasmtime engine every chain shares: compilation settings, the epoch ticker that
//! enforces time limits, and the on-disk cache of compiled modules.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::LoadError;
use crate::module::Module;

/// How often the engine's epoch advances: the resolution of time limits.
pub const TICK: Duration = Duration::from_millis(10);

/// Limits applied to every module of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call into a module may run before it is stopped.
    pub call_timeout: Duration,
    /// The most linear memory one module may have, in bytes.
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(1),
            max_memory: 256 * 1024 * 1024,
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Where compiled modules are kept between runs; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

/// Compiles and caches modules. Cheap to clone; clones share the engine and its ticker.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: wasmtime::Engine,
    cache_dir: Option<PathBuf>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// Advances the engine's epoch every [`TICK`] until the last engine clone is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Self, LoadError> {
        let mut wc = wasmtime::Config::new();
        wc.epoch_interruption(true);
        wc.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let inner = wasmtime::Engine::new(&wc).map_err(|e| LoadError::Engine(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (inner.clone(), stop.clone());
        std::thread::Builder::new()
            .name("smartmodule-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Engine {
            inner,
            cache_dir: config.cache_dir,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// Reads, checks and compiles (or loads from the cache) the module at `path`.
    pub fn load_file(&self, path: &Path) -> Result<Module, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load(&name, &bytes)
    }

    /// Checks and compiles `bytes` (or loads the compiled code from the cache).
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Module, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm { name: name.into() });
        }
        let compiled = match self.cache_path(bytes) {
            Some(path) => match self.load_cached(&path) {
                Some(m) => m,
                None => {
                    let m = self.compile(name, bytes)?;
                    self.store_in_cache(&path, &m);
                    m
                }
            },
            None => self.compile(name, bytes)?,
        };
        Module::inspect(name, compiled)
    }

    fn compile(&self, name: &str, bytes: &[u8]) -> Result<wasmtime::Module, LoadError> {
        wasmtime::Module::from_binary(&self.inner, bytes).map_err(|e| LoadError::Corrupt {
            name: name.into(),
            reason: format!("{e:#}"),
        })
    }

    /// `<cache>/<sha256 of the module>-<hash of the engine settings>.cwasm`
    fn cache_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let digest = Sha256::digest(bytes);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.precompile_compatibility_hash().hash(&mut h);
        let mut key = String::with_capacity(90);
        for b in digest {
            key.push_str(&format!("{b:02x}"));
        }
        Some(dir.join(format!("{key}-{:016x}.cwasm", h.finish())))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> Option<wasmtime::Module> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: wasmtime requires that the file was produced by `Module::serialize` of a
        // compatible engine. Only this host writes the cache directory; it writes each file
        // under a temporary name and renames it into place, so a file is either whole or
        // absent. The file name carries the hash of the engine settings, and wasmtime
        // checks the header (version, settings) again before using it; a file it rejects
        // is recompiled and replaced.
        match unsafe { wasmtime::Module::deserialize_file(&self.inner, path) } {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a compiled module the cache cannot use");
                None
            }
        }
    }

    fn store_in_cache(&self, path: &Path, module: &wasmtime::Module) {
        let result = (|| -> Result<(), String> {
            let dir = path.parent().ok_or("no cache directory")?;
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let bytes = module.serialize().map_err(|e| e.to_string())?;
            let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), unique_suffix()));
            std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                e.to_string()
            })
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-module cache; modules will be compiled again next run");
        }
    }
}

/// A name no other writer in this process or another one uses at the same moment.
fn unique_suffix() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

//! A compiled module and what it offers, checked against the ABI before it is used.

use wasmtime::{ExternType, FuncType, ValType};

use crate::error::LoadError;

/// Which SmartModule a module is, by the transform it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Filter,
    Map,
    FilterMap,
    ArrayMap,
    Aggregate,
}

impl Kind {
    /// In the order Fluvio's engine looks for them: the first one exported wins.
    pub const ALL: [Kind; 5] = [
        Kind::Filter,
        Kind::Map,
        Kind::FilterMap,
        Kind::ArrayMap,
        Kind::Aggregate,
    ];

    pub fn export(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Map => "map",
            Kind::FilterMap => "filter_map",
            Kind::ArrayMap => "array_map",
            Kind::Aggregate => "aggregate",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.export())
    }
}

/// A module that passed the load-time checks.
#[derive(Clone)]
pub struct Module {
    pub(crate) name: String,
    pub(crate) module: wasmtime::Module,
    pub(crate) kind: Kind,
    pub(crate) has_init: bool,
    pub(crate) has_dealloc: bool,
    pub(crate) wasi: bool,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("has_init", &self.has_init)
            .field("wasi", &self.wasi)
            .finish()
    }
}

pub(crate) const COPY_RECORDS: &str = "copy_records";
pub(crate) const WASI_MODULE: &str = "wasi_snapshot_preview1";

fn is_sig(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    ty.params().len() == params.len()
        && ty.results().len() == results.len()
        && ty.params().zip(params).all(|(a, b)| ValType::eq(&a, b))
        && ty.results().zip(results).all(|(a, b)| ValType::eq(&a, b))
}

fn describe(ty: &FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    };
    format!(
        "({}) -> ({})",
        list(&mut ty.params()),
        list(&mut ty.results())
    )
}

impl Module {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn has_init(&self) -> bool {
        self.has_init
    }

    /// True when the module was built for wasm32-wasip1 (it imports WASI functions).
    pub fn wasi(&self) -> bool {
        self.wasi
    }

    pub(crate) fn inspect(name: &str, module: wasmtime::Module) -> Result<Module, LoadError> {
        use ValType::I32;
        let abi = |detail: String| LoadError::Abi {
            name: name.into(),
            detail,
        };
        let transform_sig = [I32, I32, I32];
        let mut kind = None;
        let mut has_memory = false;
        let mut has_alloc = false;
        let mut has_init = false;
        let mut has_dealloc = false;
        let mut names = Vec::new();
        for export in module.exports() {
            names.push(export.name().to_string());
            match (export.name(), export.ty()) {
                ("memory", ExternType::Memory(m)) => {
                    if m.is_64() || m.is_shared() {
                        return Err(abi("`memory` must be a 32-bit, unshared memory".into()));
                    }
                    has_memory = true;
                }
                ("memory", _) => return Err(abi("the export `memory` is not a memory".into())),
                ("alloc", ExternType::Func(f)) => {
                    if !is_sig(&f, &[I32], &[I32]) {
                        return Err(abi(format!(
                            "`alloc` has type {}, expected (i32) -> (i32)",
                            describe(&f)
                        )));
                    }
                    has_alloc = true;
                }
                ("dealloc", ExternType::Func(f)) => has_dealloc = is_sig(&f, &[I32, I32], &[]),
                ("init", ExternType::Func(f)) => {
                    if !is_sig(&f, &transform_sig, &[I32]) {
                        return Err(abi(format!(
                            "`init` has type {}, expected (i32, i32, i32) -> (i32)",
                            describe(&f)
                        )));
                    }
                    has_init = true;
                }
                (other, ExternType::Func(f)) => {
                    if let Some(k) = Kind::ALL.iter().find(|k| k.export() == other) {
                        if !is_sig(&f, &transform_sig, &[I32]) {
                            return Err(abi(format!(
                                "`{other}` has type {}, expected (i32, i32, i32) -> (i32)",
                                describe(&f)
                            )));
                        }
                        // Fluvio's engine takes the first kind in its order of lookup.
                        let pos = |k: &Kind| Kind::ALL.iter().position(|x| x == k);
                        if kind.is_none_or(|cur: Kind| pos(k) < pos(&cur)) {
                            kind = Some(*k);
                        }
                    }
                }
                _ => {}
            }
        }
        let Some(kind) = kind else {
            names.sort();
            return Err(LoadError::NoTransform {
                name: name.into(),
                exports: if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                },
            });
        };
        if !has_memory {
            return Err(abi("no `memory` export".into()));
        }
        if !has_alloc {
            return Err(abi("no `alloc` export".into()));
        }
        let mut has_copy = false;
        let mut wasi = false;
        for import in module.imports() {
            match (import.module(), import.name(), import.ty()) {
                ("env", COPY_RECORDS, ExternType::Func(f)) => {
                    if !is_sig(&f, &[I32, I32], &[]) {
                        return Err(abi(format!(
                            "the import env.copy_records has type {}, expected (i32, i32) -> ()",
                            describe(&f)
                        )));
                    }
                    has_copy = true;
                }
                (WASI_MODULE, _, ExternType::Func(_)) => wasi = true,
                (m, n, _) => {
                    return Err(abi(format!(
                        "the module imports {m}.{n}, which a SmartModule host does not provide"
                    )));
                }
            }
        }
        if !has_copy {
            return Err(abi(
                "the module does not import env.copy_records, so it cannot return records".into(),
            ));
        }
        Ok(Module {
            name: name.into(),
            module,
            kind,
            has_init,
            has_dealloc,
            wasi,
        })
    }
}

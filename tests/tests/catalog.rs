//! The connector catalogue is the one list of connector types, and every entry in it is a
//! whole connector: an example, a README section and catalogue row, a broken-config fixture
//! and a JSON Schema. Nothing else in the code lists the types.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use runnel_catalog::CATALOG;
use runnel_tests::workspace_root;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_entry_is_a_whole_connector() {
    let root = workspace_root();
    let readme = read(&root.join("README.md"));
    let bad: Vec<String> = files(&root.join("tests/fixtures/bad"), "yml")
        .iter()
        .map(|p| read(p))
        .collect();
    let mut missing = Vec::new();
    for e in CATALOG {
        let k = e.kind;
        let example = root.join("examples").join(format!("{k}.yml"));
        if !example.exists() {
            missing.push(format!("{k}: no examples/{k}.yml"));
        } else {
            let text = read(&example);
            let meta = runnel_runtime::config::meta_of(&text, &runnel_catalog::canonical)
                .unwrap_or_else(|err| panic!("{}: {err}", example.display()));
            assert_eq!(meta.kind, k, "{} is not a {k} config", example.display());
        }
        if !readme
            .lines()
            .any(|l| l.starts_with("## ") && l.contains(k))
        {
            missing.push(format!("{k}: no README section (a ## heading naming it)"));
        }
        let dir = match e.direction {
            runnel_catalog::Direction::Source => "source",
            runnel_catalog::Direction::Sink => "sink",
        };
        match readme
            .lines()
            .find(|l| l.starts_with(&format!("| [`{k}`]")))
        {
            None => missing.push(format!("{k}: no row in the README's catalogue table")),
            Some(row) => {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                // | [`k`](#anchor) | direction | grade | Fluvio names | summary |
                let want = [dir, e.grade.as_str(), &e.aliases.join(", "), e.summary];
                if cells.get(2..6) != Some(&want[..]) {
                    missing.push(format!(
                        "{k}: the README's row says {row:?}, the catalogue {want:?}"
                    ));
                }
            }
        }
        if !bad
            .iter()
            .any(|t| t.contains(&format!("# connector: {k}\n")))
        {
            missing.push(format!(
                "{k}: no broken-config fixture in tests/fixtures/bad"
            ));
        }
        let schema = e.schema();
        let props = schema.get("properties").and_then(|p| p.as_object());
        if props.is_none_or(|p| p.is_empty()) {
            missing.push(format!("{k}: its schema has no properties"));
        }
        if e.summary.is_empty() {
            missing.push(format!("{k}: no summary"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Each type is a crate of its name under connectors/ with a binary of its name, and the
/// catalogue's source lists them the way scripts/build-images reads it (one
/// `Entry::of::<crate::Kind>()` line each).
#[test]
fn each_type_is_a_crate_and_the_image_script_reads_them_all() {
    let root = workspace_root();
    let source = read(&root.join("connectors/catalog/src/lib.rs"));
    let listed: Vec<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Entry::of::<"))
        .filter_map(|l| l.split("::").next())
        .map(|c| c.replace('_', "-"))
        .collect();
    let kinds: Vec<String> = CATALOG.iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(listed, kinds);
    for k in &kinds {
        let manifest = read(&root.join("connectors").join(k).join("Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"{k}\"")),
            "connectors/{k}/Cargo.toml"
        );
        assert!(
            manifest.contains("[[bin]]"),
            "connectors/{k}/Cargo.toml has no binary"
        );
    }
}

/// No type list outside the catalogue: the library and tool sources (tests aside) name a
/// connector type only in that connector's own crate.
#[test]
fn no_other_list_of_types() {
    let root = workspace_root();
    let mut found = Vec::new();
    for dir in [
        "cli/src",
        "operator/src",
        "connectors/core/src",
        "connectors/config/src",
        "connectors/runtime/src",
        "connectors/http-common/src",
        "connectors/mqtt-common/src",
    ] {
        for f in files(&root.join(dir), "rs") {
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = read(&f);
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // Canonical names only: Fluvio's aliases (`http`, `mqtt`) are URL schemes too.
            for e in CATALOG {
                if code.contains(&format!("\"{}\"", e.kind)) {
                    found.push(format!("{}: \"{}\"", f.display(), e.kind));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "connector types named outside the catalogue:\n{}",
        found.join("\n")
    );
}

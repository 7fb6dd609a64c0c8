//! Reading a connect.yml's `meta` without knowing which connector it is for: what a launcher
//! (`runnel local start`) needs to pick the binary. The connector checks the rest itself.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::{
    ConfigError, ConnectorKind, Direction, FieldError, Grade, Meta, Validate, fluvio,
    normalize_flat, normalize_versioned, parse_yaml, validate_meta,
};

/// Turns a `type:` value (and a flat file's `direction:`) into the canonical type, or says
/// why it cannot; the connector catalogue provides it (`runnel_catalog::resolve`).
pub type TypeResolver<'a> = &'a dyn Fn(&str, Option<Direction>) -> Result<String, String>;

/// Stands in for a connector so the versioned format's meta can be read with the same code
/// the connectors use; its section is never looked at.
struct AnyConnector;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct NoSection {}

impl Validate for NoSection {}

impl ConnectorKind for AnyConnector {
    const TYPE: &'static str = "";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "";
    const DIRECTION: Direction = Direction::Source;
    const SUMMARY: &'static str = "";
    const GRADE: Grade = Grade::Alpha;
    type Config = NoSection;
}

/// The `meta` of the connect.yml at `file` (either format), its type made canonical
/// (`test-connector` → `test-source`). Errors read like a connector's: `FILE: FIELD: message`.
/// Secrets are not resolved and the connector's own section is not checked.
pub fn read_meta(file: &Path, resolve: TypeResolver<'_>) -> Result<Meta, ConfigError> {
    let label = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: label.clone(),
        error: FieldError::new("", format!("cannot read the file: {e}")),
    })?;
    meta_of(&text, resolve).map_err(|error| ConfigError { file: label, error })
}

/// connect.yml text as its top-level mapping (either format); an empty file or a
/// non-mapping is an error that says what a connect.yml holds.
pub fn parse_document(text: &str) -> Result<serde_yaml::Mapping, FieldError> {
    Ok(match parse_yaml(text)? {
        Value::Mapping(m) => m,
        Value::Null => {
            return Err(FieldError::new(
                "",
                "the file is empty: a connect.yml needs meta (name, type, topic) and the connector's section; see examples/",
            ));
        }
        _ => {
            return Err(FieldError::new(
                "",
                "expected a mapping of fields (apiVersion, meta, ...); see examples/",
            ));
        }
    })
}

/// [`read_meta`] on YAML text.
pub fn meta_of(text: &str, resolve: TypeResolver<'_>) -> Result<Meta, FieldError> {
    let mut doc = parse_document(text)?;
    let versioned = doc.contains_key("apiVersion") || doc.contains_key("meta");
    let (mut meta, prefix, direction) = if versioned {
        // The connector's section is whatever else is at the top level; drop it unread.
        doc.retain(|k, _| {
            matches!(
                k.as_str(),
                Some("apiVersion") | Some("meta") | Some("transforms")
            )
        });
        let n = normalize_versioned::<AnyConnector>(doc)?;
        (n.meta, n.meta_prefix, n.direction)
    } else {
        let n = normalize_flat(doc, &[])?;
        (n.meta, n.meta_prefix, n.direction)
    };
    let direction = direction.map(|d| match d {
        fluvio::FlatDirection::Source => Direction::Source,
        fluvio::FlatDirection::Sink => Direction::Sink,
    });
    meta.kind =
        resolve(&meta.kind, direction).map_err(|m| FieldError::new(format!("{prefix}type"), m))?;
    validate_meta(&meta, prefix)?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the catalogue: two types, one alias they share.
    fn resolve(kind: &str, d: Option<Direction>) -> Result<String, String> {
        match (kind, d) {
            ("test-source" | "test-connector", _) => Ok("test-source".into()),
            ("http", Some(Direction::Sink)) | ("http-sink", _) => Ok("http-sink".into()),
            ("http", None) => Err(format!("{kind:?} names more than one connector")),
            _ => Err(format!("unknown connector type {kind:?}")),
        }
    }

    #[test]
    fn reads_meta_of_either_format_without_the_section() {
        let m = meta_of(
            "apiVersion: 0.2.0\nmeta: {name: a, type: test-connector, topic: t, version: 0.1.0}\ntest: {interval: nonsense}\n",
            &resolve,
        )
        .unwrap();
        assert_eq!((m.name.as_str(), m.kind.as_str()), ("a", "test-source"));
        assert_eq!(m.version.as_deref(), Some("0.1.0"));
        let m = meta_of(
            "name: b\ntype: http\ntopic: t\ndirection: sink\nparameters: {}\n",
            &resolve,
        )
        .unwrap();
        assert_eq!(m.kind, "http-sink");
    }

    #[test]
    fn errors_name_the_field() {
        let e = meta_of("meta: {name: a, type: test-source}\n", &resolve).unwrap_err();
        assert_eq!(e.to_string(), "meta.topic: missing field");
        let e = meta_of("meta: {name: a, type: ftp-source, topic: t}\n", &resolve).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("meta.type: unknown connector type \"ftp-source\""),
            "{e}"
        );
        let e = meta_of("meta: {name: a, type: http, topic: t}\n", &resolve).unwrap_err();
        assert!(e.to_string().contains("more than one connector"), "{e}");
    }
}

//! connect.yml (either Fluvio format) → a `Connector` resource.
//!
//! A pure step: text in, the resource and the secret names it needs out. The meta section,
//! producer and consumer settings, topic configs and transforms are checked with the
//! runtime's own types, and the whole file with the connector's own checks from the
//! catalogue, so a file this accepts is one the connector accepts too. Errors name the field
//! path as the connectors do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::api::ObjectMeta;
use runnel_operator::{
    Connector, ConnectorSpec,
    crd::{SecretRef, State, Transform as CrdTransform},
};
use runnel_runtime::config::{
    ConsumerConfig, Direction, FieldError, ProducerConfig, SecretStore, TopicConfig, Transform,
    from_value, parse_document, plain_text, scalar_text, secrets::valid_name,
    take_topic_parameters,
};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// The label the operator puts on a connector's pods, and this tool on its Secret.
pub const CONNECTOR_LABEL: &str = "runnel.dev/connector";

/// A connect.yml turned into a Connector.
#[derive(Debug, Clone)]
pub struct Converted {
    pub connector: Connector,
    /// The secrets the connector needs, in the order declared, each with the path of its
    /// declaration (for errors about a missing value).
    pub secrets: Vec<(String, String)>,
    /// Secret values written in the file itself (the flat format's inline `secrets:`).
    pub inline_values: BTreeMap<String, String>,
    /// Settings the Connector resource cannot carry; said on stderr, not fatal.
    pub warnings: Vec<String>,
}

/// The Secret that holds a connector's secret values.
pub fn secret_name(connector: &str) -> String {
    format!("{connector}-secrets")
}

/// `meta:` of the versioned format, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaSection {
    version: Option<Value>,
    image: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    topic: Value,
    #[serde(rename = "create-topic", alias = "create_topic")]
    create_topic: Option<bool>,
    #[serde(default)]
    secrets: Vec<SecretDecl>,
    producer: Option<Value>,
    consumer: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretDecl {
    name: String,
}

/// Fluvio's older flat format, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatConfig {
    version: Option<Value>,
    image: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    topic: String,
    direction: Option<FlatDirection>,
    #[serde(alias = "create-topic")]
    create_topic: Option<bool>,
    parameters: Option<Value>,
    secrets: Option<BTreeMap<String, String>>,
    producer: Option<Value>,
    consumer: Option<Value>,
    transforms: Option<Value>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FlatDirection {
    Source,
    Sink,
}

/// The fields common to both formats once read.
struct Parts {
    /// Where meta's fields live: `meta.` or nothing (flat).
    prefix: &'static str,
    name: String,
    kind: String,
    version: Option<String>,
    image: Option<String>,
    topic: String,
    create_topic: bool,
    producer: Option<Value>,
    consumer: Option<Value>,
    /// Declared secrets with the path of each declaration.
    secrets: Vec<(String, String)>,
    section: Option<Value>,
    section_path: String,
    transforms: Option<Value>,
}

/// Converts connect.yml text into a Connector in `namespace`.
pub fn convert(text: &str, namespace: &str) -> Result<Converted, FieldError> {
    let doc = parse_document(text)?;
    // Read once: the connector's own checks below get this document, not the text again.
    let whole = Value::Mapping(doc.clone());
    let mut warnings = Vec::new();
    let mut inline_values = BTreeMap::new();
    let versioned = doc.contains_key("apiVersion") || doc.contains_key("meta");
    let parts = if versioned {
        versioned_parts(doc, &mut warnings)?
    } else {
        flat_parts(doc, &mut inline_values)?
    };
    let prefix = parts.prefix;

    check_name(&parts.name).map_err(|m| FieldError::new(format!("{prefix}name"), m))?;
    runnel_runtime::hub::validate_topic_name(&parts.topic)
        .map_err(|e| FieldError::new(format!("{prefix}topic"), e.to_string()))?;
    if let Some(p) = &parts.producer {
        from_value::<ProducerConfig>(p.clone(), &format!("{prefix}producer"))?;
    }
    if let Some(c) = &parts.consumer {
        from_value::<ConsumerConfig>(c.clone(), &format!("{prefix}consumer"))?;
    }

    let mut secrets = parts.secrets;
    for (name, path) in &secrets {
        if !valid_name(name) {
            return Err(FieldError::new(
                path.clone(),
                format!("invalid secret name {name:?} (letters, digits and _ only)"),
            ));
        }
    }
    let config = match parts.section {
        None | Some(Value::Null) => None,
        Some(v @ Value::Mapping(_)) => {
            // In a pod only declared secrets reach the connector: a template naming any
            // other would fail there, so it fails here. The flat format declares none, so
            // its templates declare them.
            let mut used = Vec::new();
            templates(&v, &mut parts.section_path.clone(), &mut used)?;
            for (name, path) in used {
                if secrets.iter().any(|(s, _)| *s == name) {
                    continue;
                }
                if versioned {
                    return Err(FieldError::new(
                        path,
                        format!("secret {name:?} is used but not declared: add it to meta.secrets"),
                    ));
                }
                secrets.push((name, path));
            }
            Some(to_json(&v, &parts.section_path)?)
        }
        Some(_) => {
            return Err(FieldError::new(
                parts.section_path,
                "expected a mapping of the connector's options",
            ));
        }
    };
    let transforms = convert_transforms(parts.transforms)?;

    let connector = Connector {
        metadata: ObjectMeta {
            name: Some(parts.name.clone()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: ConnectorSpec {
            kind: parts.kind,
            version: parts.version,
            topic: parts.topic,
            create_topic: parts.create_topic,
            config,
            transforms,
            producer: parts
                .producer
                .map(|v| to_json(&v, &format!("{prefix}producer")))
                .transpose()?,
            consumer: parts
                .consumer
                .map(|v| to_json(&v, &format!("{prefix}consumer")))
                .transpose()?,
            secrets: secrets
                .iter()
                .map(|(name, _)| SecretRef {
                    name: name.clone(),
                    secret_key_ref: SecretKeySelector {
                        name: secret_name(&parts.name),
                        key: name.clone(),
                        optional: None,
                    },
                })
                .collect(),
            image: parts.image,
            resources: None,
            hub: None,
            state: State::Running,
        },
        status: None,
    };
    // The connector's own checks too (its section, the shared delivery options), as its
    // --check runs them; secret values are not needed for that, so stand-ins take their
    // place where the file does not give them.
    if let Some(entry) = runnel_catalog::find(&connector.spec.kind) {
        let pairs = inline_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entry.check(whole, &SecretStore::stand_ins("secret").with_overlay(pairs))?;
    }
    Ok(Converted {
        connector,
        secrets,
        inline_values,
        warnings,
    })
}

fn versioned_parts(mut doc: Mapping, warnings: &mut Vec<String>) -> Result<Parts, FieldError> {
    let api_version = match doc.remove("apiVersion") {
        None => "0.1.0".to_string(),
        Some(Value::String(v)) if v == "0.1.0" || v == "0.2.0" => v,
        Some(other) => {
            return Err(FieldError::new(
                "apiVersion",
                format!(
                    "unsupported version {}: expected 0.1.0 or 0.2.0",
                    scalar_text(&other)
                ),
            ));
        }
    };
    let meta = doc
        .remove("meta")
        .ok_or_else(|| FieldError::new("meta", "missing field"))?;
    if !meta.is_mapping() {
        return Err(FieldError::new(
            "meta",
            "expected a mapping with name, type, version and topic",
        ));
    }
    let meta: MetaSection = from_value(meta, "meta")?;
    let kind = canonical_type(&meta.kind, None, "meta.type")?;
    let topic = match meta.topic {
        Value::String(s) => s,
        v @ Value::Mapping(_) if api_version == "0.2.0" => {
            let tc: TopicConfig = from_value(v, "meta.topic")?;
            let mut dropped = Vec::new();
            if tc.partition.is_some() {
                dropped.push("partition");
            }
            if tc.retention.is_some() {
                dropped.push("retention");
            }
            if tc.compression.is_some() {
                dropped.push("compression");
            }
            if tc.deduplication.is_some() {
                dropped.push("deduplication");
            }
            if !dropped.is_empty() {
                warnings.push(format!(
                    "meta.topic: the Connector resource carries the topic's name only; its {} settings are not used",
                    dropped.join(", ")
                ));
            }
            tc.meta.name
        }
        Value::Mapping(_) => {
            return Err(FieldError::new(
                "meta.topic",
                "a topic config (a mapping) needs apiVersion: 0.2.0; with 0.1.0 write the topic name",
            ));
        }
        other => {
            return Err(FieldError::new(
                "meta.topic",
                format!("expected a topic name, found {}", scalar_text(&other)),
            ));
        }
    };
    let mut section_name = section_of(&kind).to_string();
    let aliases = runnel_catalog::find(&kind).map_or(&[][..], |e| e.section_aliases);
    let transforms = doc.remove("transforms");
    let mut section = None;
    for (k, v) in doc {
        let k = plain_text(&k);
        if section.is_none() && (k == section_name || aliases.contains(&k.as_str())) {
            section = Some(v);
            section_name = k;
        } else {
            return Err(FieldError::new(
                k,
                format!("unknown field, expected apiVersion, meta, transforms or {section_name}"),
            ));
        }
    }
    Ok(Parts {
        prefix: "meta.",
        name: meta.name,
        kind,
        version: meta.version.as_ref().map(plain_text),
        image: meta.image,
        topic,
        create_topic: meta.create_topic.unwrap_or(false),
        producer: meta.producer,
        consumer: meta.consumer,
        secrets: meta
            .secrets
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s.name, format!("meta.secrets[{i}].name")))
            .collect(),
        section,
        section_path: section_name,
        transforms,
    })
}

fn flat_parts(
    doc: Mapping,
    inline_values: &mut BTreeMap<String, String>,
) -> Result<Parts, FieldError> {
    let raw: FlatConfig = from_value(Value::Mapping(doc), "")?;
    let kind = canonical_type(&raw.kind, raw.direction, "type")?;
    let mut parameters = raw.parameters;
    if let (Some(p), Some(entry)) = (parameters.as_mut(), runnel_catalog::find(&kind)) {
        take_topic_parameters(p, &raw.topic, entry.fluvio_topic_parameters)?;
    }
    let mut secrets = Vec::new();
    for (name, value) in raw.secrets.unwrap_or_default() {
        secrets.push((name.clone(), format!("secrets.{name}")));
        inline_values.insert(name, value);
    }
    Ok(Parts {
        prefix: "",
        name: raw.name,
        kind,
        version: raw.version.as_ref().map(plain_text),
        image: raw.image,
        topic: raw.topic,
        create_topic: raw.create_topic.unwrap_or(false),
        producer: raw.producer,
        consumer: raw.consumer,
        secrets,
        section: parameters,
        section_path: "parameters".to_string(),
        transforms: raw.transforms,
    })
}

/// The canonical type for a `type:` value, accepting the names Fluvio used: the catalogue
/// decides (`http` and `mqtt` alone mean the source, as in Fluvio, unless a flat file says
/// `direction: sink`).
fn canonical_type(
    t: &str,
    direction: Option<FlatDirection>,
    path: &str,
) -> Result<String, FieldError> {
    let d = direction.map(|d| match d {
        FlatDirection::Source => Direction::Source,
        FlatDirection::Sink => Direction::Sink,
    });
    match runnel_catalog::resolve(t, d) {
        Ok(e) => Ok(e.kind.to_string()),
        // A known type with the wrong direction is the direction's fault.
        Err(m) if runnel_catalog::CATALOG.iter().any(|e| e.answers_to(t)) => {
            Err(FieldError::new("direction", m))
        }
        Err(m) => Err(FieldError::new(path, m)),
    }
}

/// The section of a connector type in the versioned format (`http` for http-source).
fn section_of(kind: &str) -> &'static str {
    runnel_catalog::find(kind).map_or("", |e| e.section)
}

/// Kubernetes names the Deployment and labels pods after the connector: an RFC 1123 label.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else if name.trim().is_empty() {
        Err("empty: give the connector a name".into())
    } else {
        Err(format!(
            "{name:?} is not a valid Kubernetes name: lowercase letters, digits and -, starting and ending with a letter or digit, at most 63 characters"
        ))
    }
}

fn convert_transforms(v: Option<Value>) -> Result<Vec<CrdTransform>, FieldError> {
    let steps: Vec<Transform> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v @ Value::Sequence(_)) => from_value(v, "transforms")?,
        Some(_) => {
            return Err(FieldError::new(
                "transforms",
                "expected a list of steps, each with uses: (and with:)",
            ));
        }
    };
    steps
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.uses.trim().is_empty() {
                return Err(FieldError::new(
                    format!("transforms[{i}].uses"),
                    "empty: name a .wasm file or name@version",
                ));
            }
            if t.lookback.is_some() {
                return Err(FieldError::new(
                    format!("transforms[{i}].lookback"),
                    "not supported by the runtime; remove it",
                ));
            }
            // Parameters reach the module as text, as the runtime passes them: JSON for
            // anything that is not a string.
            let with = t
                .with
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
            Ok(CrdTransform { uses: t.uses, with })
        })
        .collect()
}

/// Every `${{ secrets.NAME }}` in the strings of `v`, with the path where it occurs.
fn templates(
    v: &Value,
    path: &mut String,
    out: &mut Vec<(String, String)>,
) -> Result<(), FieldError> {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${{") {
                let after = &rest[start + 3..];
                let Some(end) = after.find("}}") else {
                    return Err(FieldError::new(
                        path.clone(),
                        "unclosed \"${{\": write ${{ secrets.NAME }}",
                    ));
                };
                let expr = after[..end].trim();
                let Some(name) = expr.strip_prefix("secrets.") else {
                    return Err(FieldError::new(
                        path.clone(),
                        format!(
                            "unknown template \"${{{{ {expr} }}}}\": only ${{{{ secrets.NAME }}}} is supported"
                        ),
                    ));
                };
                let name = name.trim();
                if !valid_name(name) {
                    return Err(FieldError::new(
                        path.clone(),
                        format!("invalid secret name {name:?} (letters, digits and _ only)"),
                    ));
                }
                if !out.iter().any(|(n, _)| n == name) {
                    out.push((name.to_string(), path.clone()));
                }
                rest = &after[end + 2..];
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                templates(item, path, out)?;
                path.truncate(len);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&plain_text(k));
                templates(item, path, out)?;
                path.truncate(len);
            }
        }
        Value::Tagged(t) => templates(&t.value, path, out)?,
        _ => {}
    }
    Ok(())
}

/// YAML → JSON for the resource's free-form fields.
fn to_json(v: &Value, path: &str) -> Result<serde_json::Value, FieldError> {
    serde_json::to_value(v).map_err(|e| {
        FieldError::new(
            path,
            format!("cannot be stored in the Connector resource: {e}"),
        )
    })
}

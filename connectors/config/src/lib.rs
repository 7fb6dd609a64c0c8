//! `connect.yml`: both Fluvio formats, secrets templating, flag overrides and validation.
//!
//! [`load`] is a pure function from a file's text, a secret store and flag overrides to the
//! [`ConnectorConfig`] a connector runs on. Every error names the file and the field path.

mod delivery;
pub mod flags;
mod fluvio;
mod peek;
pub mod secrets;

use std::path::Path;

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};
use serde_yaml::{Mapping, Value};

pub use delivery::DeliveryOptions;
pub use fluvio::{
    Compression, ConsumerConfig, ConsumerPartition, Lookback, OffsetConfig, OffsetStart,
    OffsetStrategy, ProducerConfig, TopicConfig, Transform,
};
pub use peek::{meta_of, parse_document, read_meta};
pub use runnel_core::{
    ByteSize, FieldError, HumanDuration, Seconds, join_path, topic::validate as validate_topic,
};
pub use secrets::SecretStore;

use secrets::key_name;

/// Why a config could not be loaded. Displayed as `FILE: PATH: MESSAGE`.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {error}")]
pub struct ConfigError {
    /// The file, or `command line` when the config came from flags alone.
    pub file: String,
    pub error: FieldError,
}

/// Which way records flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Source,
    Sink,
}

/// How far a connector has come, in the sense the connector catalogues of SeaTunnel, Airbyte
/// and EventMesh give these words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// Being built: it works against the real system, but its options may still change and
    /// it is not for production.
    Alpha,
    /// Stable and reliable: the connector contract is met and tested (at-least-once across
    /// `kill -9` and a server restart), options change only compatibly; not yet proven by
    /// many users.
    Beta,
    /// Generally available: proven in production use, supported, documented in full.
    Ga,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Alpha => "alpha",
            Grade::Beta => "beta",
            Grade::Ga => "GA",
        }
    }
}

/// A connector's identity and its own section of `connect.yml`.
pub trait ConnectorKind {
    /// The canonical type name (`http-source`).
    const TYPE: &'static str;
    /// Other names accepted in `type:` (Fluvio's `http`).
    const ALIASES: &'static [&'static str];
    /// The name of its section in the versioned format (`http`).
    const SECTION: &'static str;
    /// Other section names accepted in place of it (websocket-source reads Fluvio's `http:`).
    const SECTION_ALIASES: &'static [&'static str] = &[];
    const DIRECTION: Direction;
    /// Old flag names that map onto a section field: `(flag, field)`.
    const FLAG_ALIASES: &'static [(&'static str, &'static str)] = &[];
    /// Parameters of Fluvio's flat format by which this connector's Fluvio ancestor took the
    /// hub topic again (the old test connector's `topic`): accepted when they repeat it.
    const FLUVIO_TOPIC_PARAMETERS: &'static [&'static str] = &[];
    /// One line on what it does, for `runnel connector types` and the README's catalogue.
    const SUMMARY: &'static str;
    const GRADE: Grade;
    /// Whether several replicas of it may share one input (a consumer group, a queue), so
    /// the operator may run more than one.
    const SHARES_INPUT: bool = false;
    /// Whether it is a source that keeps its position in the outside system (a file offset,
    /// a cursor) in a checkpoint store, so a restart resumes there.
    const KEEPS_POSITION: bool = false;
    /// The connector's own options. Doc comments become `--help` and the JSON Schema.
    type Config: DeserializeOwned + Serialize + JsonSchema + Validate + Send + Sync + 'static;
}

/// A validation step after parsing, for rules serde cannot express. Paths are relative to the
/// connector's section.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }

    /// Rules that also need the meta section (say, a dead-letter topic that must differ from
    /// the topic).
    fn validate_with_meta(&self, _meta: &Meta) -> Result<(), FieldError> {
        Ok(())
    }

    /// A sink whose section has options of its own that mean delivery options (Fluvio's
    /// `backoff-min` of sql-sink) sets them here; `retry_given` says whether the section
    /// also has `retry:`, which then wins.
    fn adjust_delivery(&self, _delivery: &mut DeliveryOptions, _retry_given: bool) {}

    /// A connector that does what a well-known SmartModule does natively (sql-sink and
    /// Fluvio's json-sql) takes that step out of `transforms` here, with its parameters;
    /// what is left runs as SmartModules.
    fn take_transforms(&mut self, _transforms: &mut Vec<Transform>) -> Result<(), FieldError> {
        Ok(())
    }
}

/// What a connector runs on: every field resolved and validated.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub name: String,
    /// The canonical connector type, whatever alias the file used.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The container image the file names (Fluvio's `image:`), for the operator and
    /// `runnel local --container`; the binary itself does not use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub topic: String,
    /// The topic's settings when the file gave a topic config (apiVersion 0.2.0).
    #[serde(rename = "topic-config", skip_serializing_if = "Option::is_none")]
    pub topic_config: Option<TopicConfig>,
    #[serde(rename = "create-topic")]
    pub create_topic: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
}

impl Meta {
    /// Partitions requested for the topic, if the file said.
    pub fn partitions(&self) -> Option<u32> {
        self.topic_config
            .as_ref()
            .and_then(|t| t.partition.as_ref())
            .and_then(|p| p.count)
    }

    /// The id under which a sink's offsets are stored.
    pub fn consumer_id(&self) -> &str {
        self.consumer.id.as_deref().unwrap_or(&self.name)
    }
}

/// A loaded config: meta, the connector's own options, and the transforms chain.
#[derive(Debug, Clone)]
pub struct ConnectorConfig<T> {
    pub api_version: String,
    pub meta: Meta,
    pub config: T,
    /// The shared delivery options of a sink's section; `None` for a source.
    pub delivery: Option<DeliveryOptions>,
    pub transforms: Vec<Transform>,
    secret_values: Vec<String>,
}

impl<T> ConnectorConfig<T> {
    /// The secret values this config uses, for the log redactor.
    pub fn secret_values(&self) -> &[String] {
        &self.secret_values
    }
}

impl<T: Serialize> ConnectorConfig<T> {
    /// The resolved config as YAML with every secret value replaced by `******`.
    pub fn to_masked_yaml(&self, section: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a, T> {
            #[serde(rename = "apiVersion")]
            api_version: &'a str,
            meta: &'a Meta,
            #[serde(flatten)]
            section: std::collections::BTreeMap<&'a str, &'a T>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            transforms: &'a [Transform],
        }
        let mut options = serde_yaml::to_value(&self.config).unwrap_or(Value::Null);
        if let (Value::Mapping(m), Some(d)) = (&mut options, &self.delivery)
            && let Ok(Value::Mapping(d)) = serde_yaml::to_value(d)
        {
            m.extend(d);
        }
        let out = Out {
            api_version: &self.api_version,
            meta: &self.meta,
            section: [(section, &options)].into_iter().collect(),
            transforms: &self.transforms,
        };
        let text = match serde_yaml::to_value(&out) {
            Ok(mut v) => {
                drop_nulls(&mut v);
                serde_yaml::to_string(&v)
            }
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        secrets_masked(&text, &self.secret_values)
    }
}

/// Removes unset (null) fields so a printed config shows what is set and the defaults.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, v| !v.is_null());
            m.iter_mut().for_each(|(_, v)| drop_nulls(v));
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Replaces every occurrence of each secret value, longest first.
pub fn secrets_masked(text: &str, values: &[String]) -> String {
    runnel_core::mask::masked(text, values)
}

/// Settings given as flags; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub name: Option<String>,
    pub topic: Option<String>,
    pub create_topic: Option<bool>,
    pub consumer_id: Option<String>,
    /// Fields of the connector's own section.
    pub section: Mapping,
}

/// Loads a config from a file (or from flags alone when `file` is `None`).
pub fn load<C: ConnectorKind>(
    file: Option<&Path>,
    store: &SecretStore,
    overrides: &Overrides,
) -> Result<ConnectorConfig<C::Config>, ConfigError> {
    let (label, doc) = match file {
        Some(path) => {
            let label = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: label.clone(),
                error: FieldError::new("", format!("cannot read the file: {e}")),
            })?;
            let doc = parse_yaml(&text).map_err(|error| ConfigError {
                file: label.clone(),
                error,
            })?;
            (label, doc)
        }
        None => ("command line".to_string(), skeleton::<C>()),
    };
    resolve::<C>(doc, store, overrides).map_err(|error| ConfigError { file: label, error })
}

/// Loads a config from YAML text; `load` without the file system.
pub fn load_str<C: ConnectorKind>(
    text: &str,
    store: &SecretStore,
    overrides: &Overrides,
) -> Result<ConnectorConfig<C::Config>, FieldError> {
    load_value::<C>(parse_yaml(text)?, store, overrides)
}

/// Loads a config from a document already parsed ([`parse_yaml`]), for tools that read the
/// document for their own ends too and should not parse it twice.
pub fn load_value<C: ConnectorKind>(
    doc: Value,
    store: &SecretStore,
    overrides: &Overrides,
) -> Result<ConnectorConfig<C::Config>, FieldError> {
    resolve::<C>(doc, store, overrides)
}

/// Parses connect.yml text into a YAML value with YAML tags dropped; a syntax error says
/// where. The first step of [`load_str`], public for tools that read connect.yml without
/// running a connector (the `runnel connector create` conversion).
pub fn parse_yaml(text: &str) -> Result<Value, FieldError> {
    // Editors on Windows write a byte-order mark; YAML does not want it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut value = serde_yaml::from_str::<Value>(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {} column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        let msg = e.to_string();
        // serde_yaml appends the location itself; keep our prefix only.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        let hint = if text.contains('\t') && msg.contains("tab") {
            " (indent with spaces, not tabs)"
        } else {
            ""
        };
        FieldError::new("", format!("{at}invalid YAML: {msg}{hint}"))
    })?;
    untag(&mut value);
    Ok(value)
}

/// Drops YAML tags (`!foo`): connect.yml has no use for them, and a tagged value would
/// otherwise fail in confusing ways.
fn untag(v: &mut Value) {
    match v {
        Value::Tagged(t) => {
            let inner = std::mem::replace(&mut t.value, Value::Null);
            *v = inner;
            untag(v);
        }
        Value::Sequence(items) => items.iter_mut().for_each(untag),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| untag(v)),
        _ => {}
    }
}

/// With no file, the config starts as a minimal versioned document that flags fill in.
fn skeleton<C: ConnectorKind>() -> Value {
    let mut meta = Mapping::new();
    meta.insert("name".into(), C::TYPE.into());
    meta.insert("type".into(), C::TYPE.into());
    // The topic comes from --topic; without it the missing-field error says so.
    let mut doc = Mapping::new();
    doc.insert("apiVersion".into(), "0.2.0".into());
    doc.insert("meta".into(), Value::Mapping(meta));
    Value::Mapping(doc)
}

struct Normalized {
    api_version: String,
    meta: Meta,
    /// Where meta's fields live: `meta.` in the versioned format, the top level when flat.
    meta_prefix: &'static str,
    direction: Option<fluvio::FlatDirection>,
    section: Value,
    section_path: String,
    transforms: Value,
}

fn resolve<C: ConnectorKind>(
    doc: Value,
    store: &SecretStore,
    overrides: &Overrides,
) -> Result<ConnectorConfig<C::Config>, FieldError> {
    let mut used = Vec::new();
    // An error may quote a value that came from a secret: mask it like everything else.
    resolve_inner::<C>(doc, store, overrides, &mut used).map_err(|mut e| {
        e.message = secrets_masked(&e.message, &used);
        e
    })
}

fn resolve_inner<C: ConnectorKind>(
    doc: Value,
    store: &SecretStore,
    overrides: &Overrides,
    used: &mut Vec<String>,
) -> Result<ConnectorConfig<C::Config>, FieldError> {
    let mut doc = match doc {
        Value::Mapping(m) => m,
        Value::Null => {
            return Err(FieldError::new(
                "",
                "the file is empty: a connect.yml needs meta (name, type, topic) and the connector's section; see examples/",
            ));
        }
        Value::Sequence(_) => {
            return Err(FieldError::new(
                "",
                "expected a mapping of fields (apiVersion, meta, ...), found a list; see examples/",
            ));
        }
        _ => {
            return Err(FieldError::new(
                "",
                "expected a mapping of fields (apiVersion, meta, ...), found a single value; see examples/",
            ));
        }
    };
    if let Some(e) = metadata_only(&doc) {
        return Err(e);
    }
    let versioned = doc.contains_key("apiVersion") || doc.contains_key("meta");

    // Old flat files carry secret values inline; they count like a secrets file.
    let mut store = store.clone();
    if !versioned && let Some(Value::Mapping(s)) = doc.get("secrets") {
        let mut pairs = Vec::new();
        for (k, v) in s {
            let name = key_name(k);
            if !secrets::valid_name(&name) {
                return Err(FieldError::new(
                    format!("secrets.{name}"),
                    "invalid secret name (letters, digits and _ only)",
                ));
            }
            if let Some(v) = v.as_str() {
                pairs.push((name, v.to_string()));
            }
        }
        store = store.with_overlay(pairs);
    }

    // Flags are merged before templating so they may use ${{ secrets.NAME }} too.
    apply_section_overrides::<C>(&mut doc, versioned, &overrides.section);
    apply_meta_overrides(&mut doc, versioned, overrides);

    let mut doc = Value::Mapping(doc);
    secrets::render(&mut doc, &mut Vec::new(), &store, false, used)?;
    let Value::Mapping(doc) = doc else {
        return Err(FieldError::new("", "expected a mapping of fields"));
    };

    let mut norm = if versioned {
        normalize_versioned::<C>(doc)?
    } else {
        normalize_flat(doc, C::FLUVIO_TOPIC_PARAMETERS)?
    };
    check_type::<C>(&mut norm.meta, norm.meta_prefix)?;
    check_direction::<C>(norm.direction)?;
    validate_meta(&norm.meta, norm.meta_prefix)?;
    for (i, name) in norm.meta.secrets.iter().enumerate() {
        let path = format!("meta.secrets[{i}].name");
        if !secrets::valid_name(name) {
            return Err(FieldError::new(
                path,
                format!("invalid secret name {name:?} (letters, digits and _ only)"),
            ));
        }
        match store.get(name) {
            Some(v) => used.push(v),
            None => {
                return Err(FieldError::new(
                    path,
                    format!(
                        "secret {name:?} is not set (set the environment variable {name} or pass --secrets FILE)"
                    ),
                ));
            }
        }
    }

    if !norm.section.is_mapping() {
        return Err(FieldError::new(
            norm.section_path,
            "expected a mapping of the connector's options",
        ));
    }
    let mut section = norm.section;
    let retry_given = section.get("retry").is_some();
    let mut delivery = match C::DIRECTION {
        Direction::Sink => {
            let d = DeliveryOptions::take_from(&mut section, &norm.section_path)?;
            d.check_with_meta(&norm.meta)
                .map_err(|e| e.under(&norm.section_path))?;
            Some(d)
        }
        Direction::Source => None,
    };
    let mut config: C::Config = from_value(section, &norm.section_path).map_err(|mut e| {
        // The sink's own fields do not list the shared ones; the user may write either.
        if delivery.is_some() && e.message.starts_with("unknown field, expected ") {
            e.message = format!("{}, {}", e.message, delivery::LISTED);
        }
        e
    })?;
    config.validate().map_err(|e| e.under(&norm.section_path))?;
    config
        .validate_with_meta(&norm.meta)
        .map_err(|e| e.under(&norm.section_path))?;
    if let Some(d) = delivery.as_mut() {
        config.adjust_delivery(d, retry_given);
    }
    let mut transforms: Vec<Transform> = match norm.transforms {
        Value::Null => Vec::new(),
        Value::Sequence(_) => from_value(norm.transforms, "transforms")?,
        _ => {
            return Err(FieldError::new(
                "transforms",
                "expected a list of steps, each with uses: (and with:)",
            ));
        }
    };
    for (i, t) in transforms.iter().enumerate() {
        if t.uses.trim().is_empty() {
            return Err(FieldError::new(
                format!("transforms[{i}].uses"),
                "empty: name a .wasm file or name@version",
            ));
        }
    }
    config.take_transforms(&mut transforms)?;
    used.sort();
    used.dedup();
    Ok(ConnectorConfig {
        api_version: norm.api_version,
        meta: norm.meta,
        config,
        delivery,
        transforms,
        secret_values: std::mem::take(used),
    })
}

/// The mapping at `key`, created when absent. `None` when something else is there: the
/// typed parse then reports it with its path.
fn mapping_at<'a>(parent: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    match parent
        .entry(key.into())
        .or_insert_with(|| Value::Mapping(Mapping::new()))
    {
        Value::Mapping(m) => Some(m),
        _ => None,
    }
}

fn apply_section_overrides<C: ConnectorKind>(
    doc: &mut Mapping,
    versioned: bool,
    section: &Mapping,
) {
    if section.is_empty() {
        return;
    }
    let key = if !versioned {
        "parameters"
    } else {
        // Into the section the file wrote, when it used another of the type's names.
        C::SECTION_ALIASES
            .iter()
            .copied()
            .find(|a| doc.contains_key(*a))
            .unwrap_or(C::SECTION)
    };
    if let Some(m) = mapping_at(doc, key) {
        for (k, v) in section {
            m.insert(k.clone(), v.clone());
        }
    }
}

fn apply_meta_overrides(doc: &mut Mapping, versioned: bool, o: &Overrides) {
    if o.name.is_none() && o.topic.is_none() && o.create_topic.is_none() && o.consumer_id.is_none()
    {
        return;
    }
    let meta = if versioned {
        match mapping_at(doc, "meta") {
            Some(m) => m,
            None => return,
        }
    } else {
        doc
    };
    if let Some(n) = &o.name {
        meta.insert("name".into(), n.as_str().into());
    }
    if let Some(t) = &o.topic {
        // A topic config keeps its settings; only its name changes.
        match meta.get_mut("topic") {
            Some(Value::Mapping(tc)) => {
                if let Some(m) = mapping_at(tc, "meta") {
                    m.insert("name".into(), t.as_str().into());
                }
            }
            _ => {
                meta.insert("topic".into(), t.as_str().into());
            }
        }
    }
    if let Some(c) = o.create_topic {
        meta.remove("create_topic");
        meta.remove("create-topic");
        let key = if versioned {
            "create-topic"
        } else {
            "create_topic"
        };
        meta.insert(key.into(), c.into());
    }
    if let Some(id) = &o.consumer_id
        && let Some(consumer) = mapping_at(meta, "consumer")
    {
        consumer.insert("id".into(), id.as_str().into());
    }
}

fn check_type<C: ConnectorKind>(meta: &mut Meta, prefix: &str) -> Result<(), FieldError> {
    let t = meta.kind.as_str();
    if t == C::TYPE || C::ALIASES.contains(&t) {
        meta.kind = C::TYPE.to_string();
        return Ok(());
    }
    let path = format!("{prefix}type");
    let also = if C::ALIASES.is_empty() {
        String::new()
    } else {
        format!(" (or {})", C::ALIASES.join(", "))
    };
    Err(FieldError::new(
        path,
        format!(
            "{t:?} is not a type this binary runs: it runs {}{also}; `runnel connector types` lists the others",
            C::TYPE
        ),
    ))
}

fn check_direction<C: ConnectorKind>(d: Option<fluvio::FlatDirection>) -> Result<(), FieldError> {
    let Some(d) = d else { return Ok(()) };
    let (want, word) = match C::DIRECTION {
        Direction::Source => (fluvio::FlatDirection::Source, "source"),
        Direction::Sink => (fluvio::FlatDirection::Sink, "sink"),
    };
    if d == want {
        return Ok(());
    }
    let other = if word == "source" { "sink" } else { "source" };
    Err(FieldError::new(
        "direction",
        format!("{} is a {word} connector, this file says {other}", C::TYPE),
    ))
}

fn validate_meta(meta: &Meta, prefix: &str) -> Result<(), FieldError> {
    if meta.name.trim().is_empty() {
        return Err(FieldError::new(
            format!("{prefix}name"),
            "empty: give the connector a name",
        ));
    }
    let topic_path = if meta.topic_config.is_some() {
        format!("{prefix}topic.meta.name")
    } else {
        format!("{prefix}topic")
    };
    runnel_core::topic::validate(&meta.topic)
        .map_err(|e| FieldError::new(topic_path, e.to_string()))?;
    if let Some(tc) = &meta.topic_config {
        if let Some(p) = &tc.partition {
            if p.count == Some(0) {
                return Err(FieldError::new(
                    format!("{prefix}topic.partition.count"),
                    "must be at least 1",
                ));
            }
            if p.replication == Some(0) {
                return Err(FieldError::new(
                    format!("{prefix}topic.partition.replication"),
                    "must be at least 1",
                ));
            }
        }
        if let Some(c) = &tc.compression
            && !["any", "none", "gzip", "snappy", "lz4", "zstd"].contains(&c.kind.as_str())
        {
            return Err(FieldError::new(
                format!("{prefix}topic.compression.type"),
                format!(
                    "unknown value {:?}, expected any, none, gzip, snappy, lz4 or zstd",
                    c.kind
                ),
            ));
        }
    }
    if meta.producer.batch_size.is_some_and(|b| b.0 == 0) {
        return Err(FieldError::new(
            format!("{prefix}producer.batch-size"),
            "must be more than 0",
        ));
    }
    Ok(())
}

fn normalize_versioned<C: ConnectorKind>(mut doc: Mapping) -> Result<Normalized, FieldError> {
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
    let meta_value = doc.remove("meta").ok_or_else(|| {
        let flat_fields = ["name", "type", "topic"]
            .iter()
            .any(|k| doc.contains_key(*k));
        FieldError::new(
            "meta",
            if flat_fields {
                "missing field (with apiVersion, name, type and topic go under meta:)"
            } else {
                "missing field"
            },
        )
    })?;
    if !meta_value.is_mapping() {
        return Err(FieldError::new(
            "meta",
            "expected a mapping with name, type, version and topic",
        ));
    }
    let raw: fluvio::MetaSection = from_value(meta_value, "meta")?;
    let (topic, topic_config) = match raw.topic {
        Value::String(s) => (s, None),
        Value::Mapping(_) if api_version == "0.2.0" => {
            let tc: TopicConfig = from_value(raw.topic, "meta.topic")?;
            (tc.meta.name.clone(), Some(tc))
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
    let transforms = doc.remove("transforms").unwrap_or(Value::Null);
    let mut section = Value::Null;
    let mut section_path = C::SECTION.to_string();
    for (k, v) in doc {
        let k = key_name(&k);
        if k == C::SECTION || C::SECTION_ALIASES.contains(&k.as_str()) {
            if !section.is_null() {
                return Err(FieldError::new(
                    k,
                    format!(
                        "the options are already under {section_path}: write them in one section"
                    ),
                ));
            }
            section = v;
            section_path = k;
        } else {
            return Err(FieldError::new(
                k,
                format!(
                    "unknown field, expected apiVersion, meta, transforms or {}",
                    C::SECTION
                ),
            ));
        }
    }
    if section.is_null() {
        section = Value::Mapping(Mapping::new());
    }
    Ok(Normalized {
        api_version,
        meta: Meta {
            name: raw.name,
            kind: raw.kind,
            version: raw.version.as_ref().map(plain_text),
            image: raw.image,
            topic,
            topic_config,
            create_topic: raw.create_topic.unwrap_or(false),
            secrets: raw.secrets.into_iter().map(|s| s.name).collect(),
            producer: raw.producer.unwrap_or_default(),
            consumer: raw.consumer.unwrap_or_default(),
        },
        meta_prefix: "meta.",
        direction: None,
        section,
        section_path,
        transforms,
    })
}

fn normalize_flat(doc: Mapping, topic_params: &[&str]) -> Result<Normalized, FieldError> {
    let transforms = doc.get("transforms").cloned().unwrap_or(Value::Null);
    let raw: fluvio::FlatConfig = from_value(Value::Mapping(doc), "")?;
    let mut section = raw.parameters.unwrap_or(Value::Mapping(Mapping::new()));
    take_topic_parameters(&mut section, &raw.topic, topic_params)?;
    Ok(Normalized {
        api_version: "flat".into(),
        meta: Meta {
            name: raw.name,
            kind: raw.kind,
            version: raw.version.as_ref().map(plain_text),
            image: raw.image,
            topic: raw.topic,
            topic_config: None,
            create_topic: raw.create_topic.unwrap_or(false),
            secrets: Vec::new(),
            producer: raw.producer.unwrap_or_default(),
            consumer: raw.consumer.unwrap_or_default(),
        },
        meta_prefix: "",
        direction: raw.direction,
        section,
        section_path: "parameters".into(),
        transforms,
    })
}

/// Parameters of Fluvio's flat format that repeat the file's `topic`: `fluvio-topic`, which
/// Fluvio passed to every connector as `--fluvio-topic`, and the connector's own (`topic:` of
/// the old test connector). They are taken out of `parameters` when they agree with `topic`;
/// when they differ the file is ambiguous, and the error names both.
pub fn take_topic_parameters(
    parameters: &mut Value,
    topic: &str,
    own: &[&str],
) -> Result<(), FieldError> {
    let Value::Mapping(m) = parameters else {
        return Ok(());
    };
    for name in ["fluvio-topic", "fluvio_topic"].iter().chain(own) {
        let Some(v) = m.remove(*name) else { continue };
        let given = plain_text(&v);
        if given != topic {
            return Err(FieldError::new(
                format!("parameters.{name}"),
                format!(
                    "{given:?} differs from topic {topic:?}: both name the topic the connector writes to; make them the same or drop parameters.{name}"
                ),
            ));
        }
    }
    Ok(())
}

/// A file that holds only `image:` is Fluvio's connector metadata (`connector.yaml` of a
/// third-party connector), not a connect.yml; say what to do with it.
fn metadata_only(doc: &Mapping) -> Option<FieldError> {
    let only_image = !doc.is_empty() && doc.keys().all(|k| k.as_str() == Some("image"));
    only_image.then(|| {
        FieldError::new(
            "",
            "this is a connector metadata file (Fluvio's connector.yaml, which names only the image), not a connect.yml: write a connect.yml with name, type, topic and the connector's options; image: may go in it",
        )
    })
}

/// Deserializes `value`, turning serde's messages into `path: message` with the full path
/// and words a user knows (no Rust type names).
pub fn from_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let mut path = join_path(prefix, &path);
        let inner = e.into_inner().to_string();
        let message = if let Some(field) = backticked(&inner, "missing field `") {
            path = join_path(&path, &field);
            "missing field".to_string()
        } else if let Some(field) = backticked(&inner, "duplicate field `") {
            path = join_path(&path, &field);
            "given twice (under two of its names?)".to_string()
        } else if let Some(field) = backticked(&inner, "unknown field `") {
            if !path.ends_with(&field) {
                path = join_path(&path, &field);
            }
            match inner.split_once(", expected ") {
                Some((_, expected)) => {
                    format!("unknown field, expected {}", expected.replace('`', ""))
                }
                None => "unknown field".to_string(),
            }
        } else if let Some(variant) = backticked(&inner, "unknown variant `") {
            match inner.split_once(", expected ") {
                Some((_, expected)) => format!(
                    "unknown value {variant:?}, expected {}",
                    expected.replace('`', "")
                ),
                None => format!("unknown value {variant:?}"),
            }
        } else {
            humanize(&inner)
        };
        FieldError::new(path, message)
    })
}

/// Rewrites serde's type words into a user's: `struct Foo` → `a mapping`, `u64` → `a whole
/// number`, `unit value` → `nothing`.
fn humanize(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("invalid type: unit value, ") {
        return format!("empty, {}", humanize(rest));
    }
    let mut out = String::with_capacity(msg.len());
    let mut words = msg.split(' ').peekable();
    let mut first = true;
    while let Some(w) = words.next() {
        if !first {
            out.push(' ');
        }
        first = false;
        match w {
            "struct" => {
                // Drop the type name that follows.
                let _ = words.next();
                out.push_str("a mapping");
            }
            "u8" | "u16" | "u32" | "u64" | "usize" => out.push_str("a whole number of 0 or more"),
            "i8" | "i16" | "i32" | "i64" | "isize" => out.push_str("a whole number"),
            "u8," | "u16," | "u32," | "u64," | "usize," => {
                out.push_str("a whole number of 0 or more,")
            }
            "unit" if words.peek() == Some(&"value,") || words.peek() == Some(&"value") => {
                let v = words.next().unwrap_or("value");
                out.push_str(if v.ends_with(',') {
                    "nothing,"
                } else {
                    "nothing"
                });
            }
            _ => out.push_str(w),
        }
    }
    out
}

fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_string())
}

/// A YAML scalar as a user wrote it: strings as they are, anything else in YAML syntax.
pub fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => scalar_text(other),
    }
}

/// A YAML value quoted for an error message: strings in quotes, anything else in YAML.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Splits a `Name: value` header line as Fluvio's HTTP connectors write them; checks the
/// list and reports the index of a bad entry relative to `field`.
pub fn parse_header_lines(
    field: &str,
    lines: &[String],
) -> Result<Vec<(String, String)>, FieldError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let bad = || {
                FieldError::new(
                    format!("{field}[{i}]"),
                    format!("expected \"Name: value\", found {line:?}"),
                )
            };
            let (k, v) = line.split_once(':').ok_or_else(bad)?;
            let k = k.trim();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad());
            }
            Ok((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The JSON Schema of connector `C`'s section: its own options and, for a sink, the shared
/// delivery options beside them. `--schema`, the flags and the catalogue use it.
pub fn section_schema<C: ConnectorKind>() -> schemars::Schema {
    let mut schema = schemars::schema_for!(C::Config);
    if C::DIRECTION == Direction::Sink {
        let shared = schemars::schema_for!(DeliveryOptions);
        merge_object(&mut schema, &shared, "properties");
        merge_object(&mut schema, &shared, "$defs");
    }
    schema.insert(
        "title".into(),
        format!("{} options ({}: section)", C::TYPE, C::SECTION).into(),
    );
    schema
}

fn merge_object(into: &mut schemars::Schema, from: &schemars::Schema, key: &str) {
    let Some(extra) = from.get(key).and_then(|v| v.as_object()).cloned() else {
        return;
    };
    if let Some(obj) = into.as_object_mut() {
        let target = obj
            .entry(key)
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(t) = target.as_object_mut() {
            for (k, v) in extra {
                t.entry(k).or_insert(v);
            }
        }
    }
}

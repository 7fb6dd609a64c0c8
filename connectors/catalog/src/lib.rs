//! The catalogue: every connector type Runnel has, in one list ([`CATALOG`]).
//!
//! Each entry is made from the connector's own [`ConnectorKind`] (its crate declares the
//! type name, Fluvio's names for it, its section, direction, summary, grade, whether replicas
//! may share its input, and its config type, whose schema and `Validate` come along), so
//! adding a connector is its crate and one line here. The CLI (`runnel connector`, `runnel
//! local`) and the operator read it; nothing else lists connector types.
//!
//! The connector crates are linked with their `run` feature off: their config alone, so the
//! operator validates a Connector with the connector's own checks without linking a hub, the
//! SmartModule host or their C libraries.

use runnel_config::{
    ConnectorKind, FieldError, Overrides, SecretStore, load_value, section_schema,
};
pub use runnel_config::{Direction, Grade};
use serde::Serialize;
use serde_yaml::Value;

/// One connector type.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Entry {
    /// The canonical type name, which is also its binary's name (`http-source`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The names Fluvio's files use for it (`http`).
    pub aliases: &'static [&'static str],
    /// Its section in the versioned connect.yml format (`http`).
    pub section: &'static str,
    /// Other section names its files may use (Fluvio's `http:` for websocket-source).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub section_aliases: &'static [&'static str],
    pub direction: Direction,
    pub summary: &'static str,
    pub grade: Grade,
    /// Replicas may share one input, so the operator may run more than one.
    pub shares_input: bool,
    /// Flat-format parameters that repeat the topic in Fluvio's files (`topic` of the old
    /// test connector).
    #[serde(skip)]
    pub fluvio_topic_parameters: &'static [&'static str],
    #[serde(skip)]
    schema: fn() -> schemars::Schema,
    #[serde(skip)]
    check: fn(Value, &SecretStore) -> Result<(), FieldError>,
}

impl Entry {
    /// The entry of connector `C`, from what its crate declares.
    pub const fn of<C: ConnectorKind>() -> Entry {
        Entry {
            kind: C::TYPE,
            aliases: C::ALIASES,
            section: C::SECTION,
            section_aliases: C::SECTION_ALIASES,
            direction: C::DIRECTION,
            summary: C::SUMMARY,
            grade: C::GRADE,
            shares_input: C::SHARES_INPUT,
            fluvio_topic_parameters: C::FLUVIO_TOPIC_PARAMETERS,
            schema: section_schema::<C>,
            check: check::<C>,
        }
    }

    /// The JSON Schema of its section (what the binary's `--schema` prints).
    pub fn schema(&self) -> schemars::Schema {
        (self.schema)()
    }

    /// Checks connect.yml text for this connector with the connector's own rules, exactly
    /// as its `--check` would, with `secrets` giving the values of `${{ secrets.NAME }}`.
    /// `connect_yml` is the parsed document (`runnel_config::parse_yaml`): the caller read
    /// it once for its own ends, and it is not parsed again here.
    pub fn check(&self, connect_yml: Value, secrets: &SecretStore) -> Result<(), FieldError> {
        (self.check)(connect_yml, secrets)
    }

    /// The image name of its container: `runnel-<type>`.
    pub fn image_name(&self) -> String {
        format!("runnel-{}", self.kind)
    }

    /// Whether `name` is this type or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.kind == name || self.aliases.contains(&name)
    }
}

fn check<C: ConnectorKind>(doc: Value, secrets: &SecretStore) -> Result<(), FieldError> {
    match load_value::<C>(doc.clone(), secrets, &Overrides::default()) {
        // A field whose whole value is a secret cannot be checked with the stand-in the CLI
        // and the operator give for it (a broker list, a URL): the connector checks it when
        // it starts, with the secret's value.
        Err(e) if names_a_secret(&doc, &e.path) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// Whether the field at `path` (`kafka.url`) of `doc` is a secret and nothing else:
/// `${{ secrets.NAME }}` or Fluvio's `{secret: {name: NAME}}`.
fn names_a_secret(doc: &Value, path: &str) -> bool {
    let mut at = doc;
    for part in path.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return false,
        }
    }
    match at {
        Value::String(s) => {
            let t = s.trim();
            t.starts_with("${{") && t.ends_with("}}") && t.matches("${{").count() == 1
        }
        Value::Mapping(m) => {
            m.len() == 1
                && m.get("secret")
                    .and_then(|v| v.get("name"))
                    .is_some_and(|n| n.is_string())
        }
        _ => false,
    }
}

/// Every connector type, in the order they were added.
pub static CATALOG: &[Entry] = &[
    Entry::of::<test_source::TestSource>(),
    Entry::of::<http_source::HttpSource>(),
    Entry::of::<mqtt_source::MqttSource>(),
    Entry::of::<http_sink::HttpSink>(),
    Entry::of::<mqtt_sink::MqttSink>(),
    Entry::of::<file_source::FileSource>(),
    Entry::of::<file_sink::FileSink>(),
    Entry::of::<rabbitmq_source::RabbitmqSource>(),
    Entry::of::<rabbitmq_sink::RabbitmqSink>(),
    Entry::of::<redis_source::RedisSource>(),
    Entry::of::<redis_sink::RedisSink>(),
    Entry::of::<webhook_source::WebhookSource>(),
    Entry::of::<websocket_source::WebSocketSource>(),
    Entry::of::<websocket_sink::WebSocketSink>(),
    Entry::of::<kafka_source::KafkaSource>(),
    Entry::of::<kafka_sink::KafkaSink>(),
    Entry::of::<log_sink::LogSink>(),
    Entry::of::<nop_sink::NopSink>(),
    Entry::of::<sql_sink::SqlSink>(),
    Entry::of::<sql_source::SqlSource>(),
    Entry::of::<influxdb_sink::InfluxdbSink>(),
    Entry::of::<prometheus_sink::PrometheusSink>(),
];

/// The entry whose canonical type is `kind`.
pub fn find(kind: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.kind == kind)
}

/// The entry a `type:` value means, with a flat file's `direction:` when it has one. An
/// exact type name wins; a Fluvio alias shared by a source and a sink (`http`, `mqtt`)
/// means the source unless the direction says sink, as in Fluvio, where those names were
/// sources.
pub fn resolve(name: &str, direction: Option<Direction>) -> Result<&'static Entry, String> {
    if let Some(e) = find(name) {
        return match direction {
            Some(d) if d != e.direction => Err(format!(
                "{} is a {} connector, this file says {}",
                e.kind,
                word(e.direction),
                word(d)
            )),
            _ => Ok(e),
        };
    }
    let owners: Vec<&'static Entry> = CATALOG.iter().filter(|e| e.answers_to(name)).collect();
    if owners.is_empty() {
        let names: Vec<&str> = CATALOG.iter().map(|e| e.kind).collect();
        let mut aliases: Vec<&str> = CATALOG
            .iter()
            .flat_map(|e| e.aliases.iter().copied())
            .collect();
        aliases.sort_unstable();
        aliases.dedup();
        return Err(format!(
            "unknown connector type {name:?}: expected {} (or Fluvio's {})",
            names.join(", "),
            aliases.join(", ")
        ));
    }
    let wanted = direction.unwrap_or(Direction::Source);
    match owners.iter().find(|e| e.direction == wanted) {
        Some(e) => Ok(e),
        None => Err(format!(
            "{} is a {} connector, this file says {}",
            owners[0].kind,
            word(owners[0].direction),
            word(wanted)
        )),
    }
}

/// [`resolve`] as the type resolver of `runnel_config::read_meta`.
pub fn canonical(name: &str, direction: Option<Direction>) -> Result<String, String> {
    resolve(name, direction).map(|e| e.kind.to_string())
}

fn word(d: Direction) -> &'static str {
    match d {
        Direction::Source => "source",
        Direction::Sink => "sink",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_aliases_resolve() {
        for (i, a) in CATALOG.iter().enumerate() {
            for b in &CATALOG[i + 1..] {
                assert_ne!(a.kind, b.kind);
            }
            assert_eq!(resolve(a.kind, None).map(|e| e.kind), Ok(a.kind));
        }
        assert_eq!(canonical("http", None).as_deref(), Ok("http-source"));
        assert_eq!(
            canonical("http", Some(Direction::Sink)).as_deref(),
            Ok("http-sink")
        );
        assert_eq!(
            canonical("test-connector", None).as_deref(),
            Ok("test-source")
        );
        assert_eq!(canonical("mqtt", None).as_deref(), Ok("mqtt-source"));
        let e = canonical("test-connector", Some(Direction::Sink)).unwrap_err();
        assert_eq!(e, "test-source is a source connector, this file says sink");
        let e = canonical("ftp", None).unwrap_err();
        assert!(
            e.starts_with("unknown connector type \"ftp\": expected test-source"),
            "{e}"
        );
    }

    fn yaml(text: &str) -> Value {
        runnel_config::parse_yaml(text).unwrap()
    }

    #[test]
    fn checks_with_the_connectors_own_rules() {
        let e = find("http-source").unwrap();
        let err = e
            .check(
                yaml("apiVersion: 0.2.0\nmeta: {name: a, type: http-source, topic: t, version: 0.1.0}\nhttp: {endpoint: 'ftp://x'}\n"),
                &SecretStore::default(),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http.endpoint: unsupported scheme \"ftp\": use http:// or https://"
        );
        let ok = "apiVersion: 0.2.0\nmeta: {name: a, type: http-sink, topic: t, secrets: [{name: TOKEN}]}\nhttp: {endpoint: 'https://x/${{ secrets.TOKEN }}', concurrency: 4}\n";
        find("http-sink")
            .unwrap()
            .check(yaml(ok), &SecretStore::stand_ins("secret"))
            .unwrap();
        // A broker list that is a secret is checked by the connector, with its value.
        let kafka = find("kafka-source").unwrap();
        for url in ["'${{ secrets.BROKERS }}'", "{secret: {name: BROKERS}}"] {
            let doc = format!(
                "meta: {{name: a, type: kafka-source, topic: t, version: latest, secrets: [{{name: BROKERS}}]}}\nkafka: {{url: {url}, topic: x}}\n"
            );
            kafka
                .check(yaml(&doc), &SecretStore::stand_ins("secret"))
                .unwrap();
        }
        let doc = "meta: {name: a, type: kafka-source, topic: t, version: latest}\nkafka: {url: nowhere, topic: x}\n";
        assert!(kafka.check(yaml(doc), &SecretStore::default()).is_err());
        let schema = find("http-sink").unwrap().schema();
        assert!(
            schema
                .get("properties")
                .unwrap()
                .get("dead_letter_topic")
                .is_some()
        );
    }
}

//! redis-sink's config: write each record to Redis with XADD (optionally trimmed with
//! `MAXLEN ~`), PUBLISH, LPUSH / RPUSH, or SET / HSET with the key fixed, from the record's
//! key or header, or from a field of its JSON value (eKuiper's Redis sink), with an
//! optional expiry; one pipeline per batch. The binary (feature `run`) does it.

use redis_common::{Address, Parts};
use runnel_codec::{FormatOptions, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The redis-sink connector type.
#[derive(Debug)]
pub struct RedisSink;

impl ConnectorKind for RedisSink {
    const TYPE: &'static str = "redis-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "redis";
    const SUMMARY: &'static str =
        "Writes records to Redis (XADD, PUBLISH, LPUSH/RPUSH, SET or HSET), pipelined per batch.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = RedisSinkConfig;
}

/// The command each record becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// XADD to a stream: the value in the value field, the record key in `key`, headers as
    /// further fields.
    Xadd,
    /// PUBLISH to a channel.
    Publish,
    /// LPUSH to a list (a queue read from its other end).
    Lpush,
    /// RPUSH to a list.
    Rpush,
    /// SET the key to the value.
    Set,
    /// HSET the key's hash to the fields of the value, a JSON object.
    Hset,
}

/// Where each record's key (stream, channel, list or key name) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFrom {
    Fixed(String),
    RecordKey,
    Header(String),
    /// A top-level field of the JSON value, a string or a number.
    Field(String),
}

/// Options of redis-sink (the `redis:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// The server: redis://[user:password@]host[:port][/db] or rediss:// (TLS). Default
    /// redis://127.0.0.1:6379/0.
    #[serde(default, serialize_with = "runnel_config::secrets::masked_url_option")]
    pub url: Option<String>,
    /// The server as host:port (eKuiper's addr), instead of url.
    pub addr: Option<String>,
    /// The ACL user to log in as; wins over the URL's.
    pub username: Option<String>,
    /// The password; write it as ${{ secrets.NAME }}. Never logged.
    pub password: Option<Secret>,
    /// The database number; wins over the URL's. Default 0.
    pub db: Option<i64>,
    /// xadd, publish, lpush, rpush, set or hset.
    pub mode: Option<Mode>,
    /// eKuiper's dataType instead of mode: string (SET) or list (LPUSH).
    #[serde(alias = "dataType", alias = "data-type")]
    pub data_type: Option<String>,
    /// The stream, channel, list or key every record goes to.
    pub key: Option<String>,
    /// Take each record's key from the record instead: key (its key), header:NAME (one of
    /// its headers) or field:NAME (a field of its JSON value). A record without it fails
    /// for good and follows on_error.
    #[serde(alias = "key-from")]
    pub key_from: Option<String>,
    /// eKuiper's field: the same as key_from: field:NAME.
    pub field: Option<String>,
    /// XADD trims the stream to about this many entries (MAXLEN ~).
    pub maxlen: Option<u64>,
    /// How long a SET key or HSET hash lives. Default: for ever.
    pub expiry: Option<HumanDuration>,
    /// eKuiper's expiration, in seconds (-1: for ever), instead of expiry.
    pub expiration: Option<i64>,
    /// The stream field XADD puts the value in. Default value.
    #[serde(default = "default_value_field", alias = "value-field")]
    pub value_field: String,
    /// How each value is made: bytes (the record's value as it is, the default), text,
    /// json, csv or cloudevents. A record that does not fit follows on_error.
    #[serde(default)]
    pub format: FormatOptions,
    /// How long a batch waits for its replies before the attempt counts as failed.
    /// Default 10s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_value_field() -> String {
    "value".into()
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(10_000)
}

impl RedisSinkConfig {
    /// The server's address, checked.
    pub fn address(&self) -> Result<Address, FieldError> {
        Address::from_parts(Parts {
            url: self.url.as_deref(),
            addr: self.addr.as_deref(),
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            db: self.db,
        })
    }

    /// The mode, given or from eKuiper's dataType.
    pub fn mode(&self) -> Result<Mode, FieldError> {
        match (self.mode, self.data_type.as_deref()) {
            (Some(_), Some(_)) => Err(FieldError::new(
                "data_type",
                "cannot be used with mode: give one of them",
            )),
            (Some(m), None) => Ok(m),
            (None, Some("string")) => Ok(Mode::Set),
            (None, Some("list")) => Ok(Mode::Lpush),
            (None, Some(other)) => Err(FieldError::new(
                "data_type",
                format!("{other:?} is not string or list (or give mode)"),
            )),
            (None, None) => Err(FieldError::new(
                "mode",
                "missing: give xadd, publish, lpush, rpush, set or hset",
            )),
        }
    }

    /// Where each record's key comes from.
    pub fn key_source(&self) -> Result<KeyFrom, FieldError> {
        let given = [
            self.key.is_some(),
            self.key_from.is_some(),
            self.field.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(FieldError::new(
                "key_from",
                "give one of key, key_from and field",
            ));
        }
        if let Some(k) = &self.key {
            if k.is_empty() {
                return Err(FieldError::new("key", "is empty"));
            }
            return Ok(KeyFrom::Fixed(k.clone()));
        }
        if let Some(f) = &self.field {
            if f.is_empty() {
                return Err(FieldError::new("field", "is empty"));
            }
            return Ok(KeyFrom::Field(f.clone()));
        }
        let Some(from) = &self.key_from else {
            return Err(FieldError::new(
                "key",
                "missing: name the stream, channel, list or key (or give key_from)",
            ));
        };
        match from.split_once(':') {
            None if from == "key" => Ok(KeyFrom::RecordKey),
            Some(("header", n)) if !n.is_empty() => Ok(KeyFrom::Header(n.to_string())),
            Some(("field", n)) if !n.is_empty() => Ok(KeyFrom::Field(n.to_string())),
            _ => Err(FieldError::new(
                "key_from",
                format!("{from:?} is not key, header:NAME or field:NAME"),
            )),
        }
    }

    /// The expiry of SET keys and HSET hashes, if any.
    pub fn ttl(&self) -> Result<Option<std::time::Duration>, FieldError> {
        match (self.expiry, self.expiration) {
            (Some(_), Some(_)) => Err(FieldError::new(
                "expiration",
                "cannot be used with expiry: give one of them",
            )),
            (Some(d), None) if d.0.is_zero() => Err(FieldError::new(
                "expiry",
                "must be more than 0 (leave it out to keep keys for ever)",
            )),
            (Some(d), None) => Ok(Some(d.0)),
            (None, Some(-1)) => Ok(None),
            (None, Some(s)) if s > 0 => Ok(Some(std::time::Duration::from_secs(s as u64))),
            (None, Some(_)) => Err(FieldError::new(
                "expiration",
                "must be a number of seconds, or -1 for none",
            )),
            (None, None) => Ok(None),
        }
    }
}

impl Validate for RedisSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.address()?;
        let mode = self.mode()?;
        self.key_source()?;
        let ttl = self.ttl()?;
        if ttl.is_some() && !matches!(mode, Mode::Set | Mode::Hset) {
            return Err(FieldError::new(
                if self.expiry.is_some() {
                    "expiry"
                } else {
                    "expiration"
                },
                "applies to mode set and hset only",
            ));
        }
        if self.maxlen.is_some() && mode != Mode::Xadd {
            return Err(FieldError::new("maxlen", "applies to mode xadd only"));
        }
        if self.maxlen == Some(0) {
            return Err(FieldError::new("maxlen", "must be 1 or more"));
        }
        if self.value_field.is_empty() {
            return Err(FieldError::new("value_field", "is empty"));
        }
        if self.timeout.0.is_zero() {
            return Err(FieldError::new("timeout", "must be more than 0"));
        }
        self.format.check("format", Way::Write)
    }
}

//! redis-source's config: read a stream with a consumer group (XREADGROUP, acknowledged with
//! XACK once the hub stored), a list used as a reliable queue (each item moved to a
//! processing list, removed once stored), or Pub/Sub channels (at most once). The binary
//! (feature `run`) does it.

use redis_common::{Address, Parts};
use runnel_codec::{FormatOptions, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use runnel_core::retry::check_backoff;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The redis-source connector type.
#[derive(Debug)]
pub struct RedisSource;

impl ConnectorKind for RedisSource {
    const TYPE: &'static str = "redis-source";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "redis";
    const SUMMARY: &'static str =
        "Reads a Redis stream (consumer group), a list as a reliable queue, or Pub/Sub channels.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    type Config = RedisSourceConfig;
}

/// Where the records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A stream read with a consumer group: at least once.
    Streams,
    /// A list used as a reliable queue: at least once.
    List,
    /// Pub/Sub channels and patterns: at most once (Redis keeps nothing for a subscriber
    /// that is away).
    Pubsub,
}

/// Where a new consumer group starts in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStart {
    Beginning,
    End,
    Id(String),
}

/// Options of redis-source (the `redis:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
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
    /// streams, list or pubsub. Default: the one whose option is given (stream, list, or
    /// channels / patterns).
    pub mode: Option<Mode>,
    /// The stream to read (mode streams).
    pub stream: Option<String>,
    /// The consumer group, created (with the stream) when missing. Default runnel.
    #[serde(default = "default_group")]
    pub group: String,
    /// This reader's name in the group; keep it stable across restarts, so a restarted
    /// connector takes back what it had read but not acknowledged. Default: $HOSTNAME (a
    /// pod's name), else runnel.
    pub consumer: Option<String>,
    /// Where a new group starts: beginning (the whole stream, the default), end (only new
    /// entries) or an entry ID.
    #[serde(default = "default_start")]
    pub start: String,
    /// Entries another consumer of the group read but did not acknowledge for this long are
    /// claimed (XAUTOCLAIM) and read again: a dead consumer's work is not lost. Default 1m.
    #[serde(default = "default_claim_idle", alias = "claim-idle")]
    pub claim_idle: HumanDuration,
    /// The field of an entry that holds the record's value; the field `key` is its key, the
    /// other fields become headers. An entry without this field becomes a JSON object of
    /// all its fields. Default value.
    #[serde(default = "default_value_field", alias = "value-field")]
    pub value_field: String,
    /// The list to consume (mode list), from its head as LPUSH producers fill it (FIFO).
    pub list: Option<String>,
    /// Where items wait until the hub stored them; items left there by a crash are read
    /// again first. Give each reader of one list its own. Default LIST:processing.
    #[serde(alias = "processing-list")]
    pub processing_list: Option<String>,
    /// Channels to subscribe to (mode pubsub).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Channel patterns to subscribe to (PSUBSCRIBE, mode pubsub).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Entries or items taken per read. Default 100.
    #[serde(default = "default_count")]
    pub count: usize,
    /// What each value is: bytes (the default), text, json, csv or cloudevents. A value that
    /// does not decode is skipped (and acknowledged), with the reason in a log line and a
    /// count in records_failed.
    #[serde(default)]
    pub format: FormatOptions,
    /// The first wait after a lost or failed connection; it doubles after each failure up
    /// to max_backoff, with jitter. Default 500ms.
    #[serde(default = "default_initial_backoff", alias = "initial-backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest wait between reconnects. Default 30s.
    #[serde(default = "default_max_backoff", alias = "max-backoff")]
    pub max_backoff: HumanDuration,
}

fn default_group() -> String {
    "runnel".into()
}
fn default_start() -> String {
    "beginning".into()
}
fn default_claim_idle() -> HumanDuration {
    HumanDuration::from_millis(60_000)
}
fn default_value_field() -> String {
    "value".into()
}
fn default_count() -> usize {
    100
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl RedisSourceConfig {
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

    /// The mode, given or read off the options.
    pub fn mode(&self) -> Result<Mode, FieldError> {
        let given: Vec<Mode> = [
            (self.stream.is_some(), Mode::Streams),
            (self.list.is_some(), Mode::List),
            (
                !self.channels.is_empty() || !self.patterns.is_empty(),
                Mode::Pubsub,
            ),
        ]
        .into_iter()
        .filter_map(|(on, m)| on.then_some(m))
        .collect();
        let what = |m: Mode| match m {
            Mode::Streams => "stream",
            Mode::List => "list",
            Mode::Pubsub => "channels or patterns",
        };
        match (self.mode, given.as_slice()) {
            (None, []) => Err(FieldError::new(
                "stream",
                "missing: name a stream (or a list, or channels to subscribe to)",
            )),
            (None, [m]) => Ok(*m),
            (None, [a, b, ..]) => Err(FieldError::new(
                what(*b),
                format!("cannot be used with {}: one source per connector", what(*a)),
            )),
            (Some(m), g) => {
                if let Some(other) = g.iter().find(|x| **x != m) {
                    return Err(FieldError::new(
                        what(*other),
                        format!("is not read in mode {m:?}", m = mode_name(m)),
                    ));
                }
                if g.is_empty() {
                    return Err(FieldError::new(
                        what(m),
                        format!("missing: mode {} needs it", mode_name(m)),
                    ));
                }
                Ok(m)
            }
        }
    }

    /// Where a new group starts.
    pub fn group_start(&self) -> GroupStart {
        match self.start.trim() {
            "beginning" | "0" => GroupStart::Beginning,
            "end" | "$" => GroupStart::End,
            id => GroupStart::Id(id.to_string()),
        }
    }

    /// The consumer name: the option, else $HOSTNAME, else runnel.
    pub fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "runnel".into())
    }

    /// The processing list of mode list.
    pub fn processing_list_name(&self) -> String {
        match (&self.processing_list, &self.list) {
            (Some(p), _) => p.clone(),
            (None, Some(l)) => format!("{l}:processing"),
            (None, None) => String::new(),
        }
    }
}

/// The name a mode is written with.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Streams => "streams",
        Mode::List => "list",
        Mode::Pubsub => "pubsub",
    }
}

fn is_stream_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    ok(ms) && parts.next().is_none_or(ok)
}

impl Validate for RedisSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.address()?;
        let mode = self.mode()?;
        for (field, v) in [("stream", &self.stream), ("list", &self.list)] {
            if v.as_deref().is_some_and(str::is_empty) {
                return Err(FieldError::new(field, "is empty"));
            }
        }
        if mode == Mode::Streams {
            if self.group.is_empty() {
                return Err(FieldError::new("group", "is empty"));
            }
            if let GroupStart::Id(id) = self.group_start()
                && !is_stream_id(&id)
            {
                return Err(FieldError::new(
                    "start",
                    format!("{id:?} is not beginning, end or a stream entry ID (1700000000000-0)"),
                ));
            }
            if self.claim_idle.0.is_zero() {
                return Err(FieldError::new(
                    "claim_idle",
                    "must be more than 0 (entries in flight would be claimed at once)",
                ));
            }
        }
        if mode == Mode::List
            && self.processing_list_name() == self.list.clone().unwrap_or_default()
        {
            return Err(FieldError::new("processing_list", "must differ from list"));
        }
        if self
            .channels
            .iter()
            .chain(&self.patterns)
            .any(String::is_empty)
        {
            return Err(FieldError::new("channels", "holds an empty name"));
        }
        if !(1..=10_000).contains(&self.count) {
            return Err(FieldError::new("count", "must be between 1 and 10000"));
        }
        self.format.check("format", Way::Read)?;
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}

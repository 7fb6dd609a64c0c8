//! rabbitmq-sink's config: publish each record to an exchange with a routing key (fixed,
//! from the record's key, or from one of its headers), persistent, with publisher confirms.
//! The binary (feature `run`) does it.

use rabbitmq_common::{Address, Parts};
use runnel_codec::{FormatOptions, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rabbitmq-sink connector type.
#[derive(Debug)]
pub struct RabbitmqSink;

impl ConnectorKind for RabbitmqSink {
    const TYPE: &'static str = "rabbitmq-sink";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "rabbitmq";
    const SUMMARY: &'static str =
        "Publishes each record to a RabbitMQ exchange, committed once the broker confirmed it.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Sink;
    type Config = RabbitmqSinkConfig;
}

/// Options of rabbitmq-sink (the `rabbitmq:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqSinkConfig {
    /// The broker: amqp://[user:password@]host[:port][/vhost] or amqps://; or host (and
    /// port, vhost) instead, as Eventflux does. Default credentials guest/guest.
    #[serde(default, serialize_with = "runnel_config::secrets::masked_url_option")]
    pub url: Option<String>,
    /// The broker's host name, instead of url.
    pub host: Option<String>,
    /// Its port; wins over the URL's. Default 5672 (5671 for amqps).
    pub port: Option<u16>,
    /// The user to log in as; wins over the URL's. Default guest.
    pub username: Option<String>,
    /// The password; write it as ${{ secrets.NAME }}. Never logged. Default guest.
    pub password: Option<Secret>,
    /// The virtual host; wins over the URL's. Default "/".
    pub vhost: Option<String>,
    /// The exchange to publish to. Default "" (the default exchange, where the routing key
    /// names a queue).
    #[serde(default)]
    pub exchange: String,
    /// The routing key of every message.
    #[serde(alias = "routing.key", alias = "routing-key")]
    pub routing_key: Option<String>,
    /// Take each message's routing key from the record instead: key (its key) or
    /// header:NAME (one of its headers). A record without it fails for good and follows
    /// on_error.
    #[serde(alias = "routing-key-from")]
    pub routing_key_from: Option<String>,
    /// Declare the exchange (durable, of exchange_type) at each connect. Default false.
    #[serde(default, alias = "declare.exchange")]
    pub declare_exchange: bool,
    /// The type of a declared exchange: direct (default), fanout, topic or headers.
    #[serde(default = "default_exchange_type", alias = "exchange.type")]
    pub exchange_type: String,
    /// Persistent messages (delivery mode 2), kept across a broker restart in a durable
    /// queue. Default true.
    #[serde(default = "yes")]
    pub persistent: bool,
    /// Ask the broker to return a message no queue takes (mandatory); it then fails for
    /// good and follows on_error instead of vanishing. Default true.
    #[serde(default = "yes")]
    pub mandatory: bool,
    /// The content-type property. Default: the format's (application/json for json, ...),
    /// else the record's content-type header, else none.
    #[serde(alias = "content.type")]
    pub content_type: Option<String>,
    /// How each body is made: bytes (the value as it is, the default), text, json, csv or
    /// cloudevents. A record that does not fit follows on_error with the reason. The
    /// record's headers go out as message headers either way.
    #[serde(default)]
    pub format: FormatOptions,
    /// How long a publish may wait for the broker's confirm before the attempt counts as
    /// failed and is retried. Default 30s.
    #[serde(default = "default_publish_timeout", alias = "publish-timeout")]
    pub publish_timeout: HumanDuration,
}

fn yes() -> bool {
    true
}
fn default_exchange_type() -> String {
    "direct".into()
}
fn default_publish_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

/// Where a message's routing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingKey {
    Fixed(String),
    RecordKey,
    Header(String),
}

impl RabbitmqSinkConfig {
    /// The broker's address, checked.
    pub fn address(&self) -> Result<Address, FieldError> {
        Address::from_parts(Parts {
            url: self.url.as_deref(),
            host: self.host.as_deref(),
            port: self.port,
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            vhost: self.vhost.as_deref(),
        })
    }

    /// Where routing keys come from, checked.
    pub fn routing(&self) -> Result<RoutingKey, FieldError> {
        match (&self.routing_key, self.routing_key_from.as_deref()) {
            (Some(_), Some(_)) => Err(FieldError::new(
                "routing_key_from",
                "cannot be used with routing_key: give one of them",
            )),
            (Some(k), None) => {
                rabbitmq_common::name("routing_key", k)?;
                Ok(RoutingKey::Fixed(k.clone()))
            }
            (None, None) => Ok(RoutingKey::Fixed(String::new())),
            (None, Some("key")) => Ok(RoutingKey::RecordKey),
            (None, Some(h)) => match h.strip_prefix("header:") {
                Some(name) if !name.is_empty() => Ok(RoutingKey::Header(name.to_string())),
                _ => Err(FieldError::new(
                    "routing_key_from",
                    format!("{h:?}: expected key or header:NAME"),
                )),
            },
        }
    }
}

impl Validate for RabbitmqSinkConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.address()?;
        rabbitmq_common::name("exchange", &self.exchange)?;
        self.routing()?;
        if !matches!(
            self.exchange_type.as_str(),
            "direct" | "fanout" | "topic" | "headers"
        ) {
            return Err(FieldError::new(
                "exchange_type",
                format!(
                    "{:?}: expected direct, fanout, topic or headers",
                    self.exchange_type
                ),
            ));
        }
        if self.declare_exchange && self.exchange.is_empty() {
            return Err(FieldError::new(
                "declare_exchange",
                "the default exchange (exchange: \"\") always exists and cannot be declared",
            ));
        }
        if self.publish_timeout.0.is_zero() {
            return Err(FieldError::new("publish_timeout", "must be more than 0"));
        }
        self.format.check("format", Way::Write)
    }
}

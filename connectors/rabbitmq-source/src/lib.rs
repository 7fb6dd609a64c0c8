//! rabbitmq-source's config: consume a RabbitMQ queue (optionally declared and bound to an
//! exchange) with a prefetch window, each delivery acknowledged only after the hub stored
//! its record. The binary (feature `run`) does it.

use rabbitmq_common::{Address, Parts};
use runnel_codec::{FormatOptions, Way};
use runnel_config::{
    ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use runnel_core::retry::check_backoff;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rabbitmq-source connector type.
#[derive(Debug)]
pub struct RabbitmqSource;

impl ConnectorKind for RabbitmqSource {
    const TYPE: &'static str = "rabbitmq-source";
    const ALIASES: &'static [&'static str] = &[];
    const SECTION: &'static str = "rabbitmq";
    const SUMMARY: &'static str =
        "Consumes a RabbitMQ queue, acknowledging each message once the hub stored it.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    /// Several consumers of one queue share its messages (RabbitMQ hands each to one).
    const SHARES_INPUT: bool = true;
    type Config = RabbitmqSourceConfig;
}

/// Options of rabbitmq-source (the `rabbitmq:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqSourceConfig {
    /// The broker: amqp://[user:password@]host[:port][/vhost] (port 5672) or amqps://
    /// (TLS with the system's roots, port 5671); an empty path is the vhost "/", written
    /// %2f in a URL. Or give host (and port, vhost) instead, as Eventflux does. Default
    /// credentials guest/guest, which RabbitMQ accepts from loopback only.
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
    /// The queue to consume.
    pub queue: String,
    /// Declare the queue (durable) at each connect, so it exists. Default true.
    #[serde(default = "yes", alias = "declare.queue", alias = "declare_queue")]
    pub declare: bool,
    /// An exchange to bind the queue to at each connect, with routing_keys.
    pub exchange: Option<String>,
    /// The routing keys (binding keys) the queue is bound to exchange with. Default one
    /// empty key.
    #[serde(default, alias = "routing-keys")]
    pub routing_keys: Vec<String>,
    /// How many unacknowledged messages the broker may hand over at once. Default 100.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// The consumer tag. Default: one the broker makes up.
    #[serde(alias = "consumer.tag", alias = "consumer-tag")]
    pub consumer_tag: Option<String>,
    /// What each message body is: bytes (the default), text, json, csv or cloudevents. A
    /// body that does not decode is skipped and acknowledged, with the reason in a log line
    /// and a count in records_failed.
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

fn yes() -> bool {
    true
}
fn default_prefetch() -> u16 {
    100
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration::from_millis(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}

impl RabbitmqSourceConfig {
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
}

impl Validate for RabbitmqSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.address()?;
        if self.queue.is_empty() {
            return Err(FieldError::new(
                "queue",
                "is empty: name the queue to consume",
            ));
        }
        rabbitmq_common::name("queue", &self.queue)?;
        if let Some(x) = &self.exchange {
            rabbitmq_common::name("exchange", x)?;
            if x.is_empty() {
                return Err(FieldError::new(
                    "exchange",
                    "is empty: the default exchange cannot be bound to; leave exchange out",
                ));
            }
        } else if !self.routing_keys.is_empty() {
            return Err(FieldError::new(
                "routing_keys",
                "are only read with exchange: name the exchange to bind the queue to",
            ));
        }
        if self.prefetch == 0 {
            return Err(FieldError::new(
                "prefetch",
                "must be 1 or more (0 would let the broker send without limit)",
            ));
        }
        self.format.check("format", Way::Read)?;
        check_backoff(self.initial_backoff, self.max_backoff)
    }
}

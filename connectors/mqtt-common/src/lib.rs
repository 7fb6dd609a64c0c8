//! What mqtt-source and mqtt-sink share: the broker URL (credentials kept out of every log
//! line and error), the session options both sections carry, TLS with the system's roots and
//! the ring provider, and connection errors described for people.

use std::{fmt, sync::Arc, time::Duration};

use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, QoS, Transport};
use runnel_config::{FieldError, Seconds};
// Shared with every connector that takes a password.
pub use runnel_config::secrets::{Secret, masked_url};

/// The MQTT maximum (256 MB): a large message must never cut the connection, or it would
/// come back after every reconnect.
const MAX_PACKET: usize = 268_435_455;

/// A broker address parsed from `mqtt://[user[:password]@]host[:port][?client_id=ID]`
/// (`mqtts://` for TLS; `tcp://` and `ssl://` as rumqttc and Fluvio accept them; a bare
/// `host[:port]` as `mqtt://`).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub client_id: Option<String>,
}

impl BrokerUrl {
    /// Parses `s`; errors name `field` and never repeat the URL (it may hold a password).
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        // A bare host[:port], as Fluvio's first mqtt connector took it (`mqtt-url:
        // "mqtt.hsl.fi"`), means mqtt://.
        let with_scheme;
        let s = if s.contains("://") {
            s
        } else {
            with_scheme = format!("mqtt://{s}");
            &with_scheme
        };
        let url =
            url::Url::parse(s).map_err(|e| FieldError::new(field, format!("invalid URL: {e}")))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(FieldError::new(
                    field,
                    format!("unsupported scheme {other:?}: use mqtt:// or mqtts://"),
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(FieldError::new(field, "the URL has no host")),
        };
        if !matches!(url.path(), "" | "/") {
            return Err(FieldError::new(
                field,
                "the URL has a path; an MQTT broker URL is scheme://host:port (the MQTT topic goes in topic)",
            ));
        }
        let mut client_id = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "client_id" => client_id = Some(v.into_owned()),
                other => {
                    return Err(FieldError::new(
                        field,
                        format!(
                            "unknown URL parameter {other:?}: only client_id is read from the URL"
                        ),
                    ));
                }
            }
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(|p| Secret::new(decode(p)));
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            username,
            password,
            client_id,
        })
    }
}

/// The URL without credentials: what logs and errors show.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether `s` is a valid MQTT topic filter (`+` and `#` fill whole levels, `#` only last).
pub fn valid_filter(s: &str) -> bool {
    rumqttc::valid_filter(s)
}

/// Checks a `qos` field: 0 or 1.
pub fn qos(field: &str, n: u8) -> Result<QoS, FieldError> {
    match n {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Err(FieldError::new(
            field,
            "2 (exactly once) is not supported: use 0 (at most once) or 1 (at least once; with the hub's acknowledgements and a persistent session nothing is lost)",
        )),
        n => Err(FieldError::new(
            field,
            format!("{n} is not a QoS: use 0 or 1"),
        )),
    }
}

/// Checks a keep-alive (`timeout`): 0 (off) or whole seconds from 1s to 65535s.
pub fn keep_alive(field: &str, d: Seconds) -> Result<(), FieldError> {
    let d = d.0;
    if d.is_zero() {
        return Ok(());
    }
    if d < Duration::from_secs(1) || d > Duration::from_secs(u64::from(u16::MAX)) {
        return Err(FieldError::new(
            field,
            format!(
                "{} is out of range: the MQTT keep-alive is 0 (off) or 1s to 18h 12m 15s",
                humantime::format_duration(d)
            ),
        ));
    }
    Ok(())
}

/// Checks a client id the config gives.
pub fn client_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > 65_535 {
        return Err(FieldError::new(field, "must be 1 to 65535 bytes"));
    }
    Ok(())
}

/// A client id unique to this start: `runnel-` and 16 hex digits, the 23 characters every
/// MQTT 3.1.1 broker must accept.
pub fn generated_client_id() -> String {
    format!("runnel-{:016x}", fastrand::u64(..))
}

/// What a connection needs besides the URL.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    pub client_id: &'a str,
    pub keep_alive: Duration,
    pub clean_session: bool,
    /// Explicit credentials; they win over the URL's.
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    /// Outgoing QoS 1 publishes in flight at once.
    pub inflight: u16,
    /// Incoming QoS 1 publishes are acknowledged by the connector, not by rumqttc.
    pub manual_acks: bool,
}

/// Builds rumqttc's options. Errors are plain text without credentials.
pub fn options(url: &BrokerUrl, s: &Session<'_>) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(s.client_id, url.host.clone(), url.port);
    // The checks above make these setters' own asserts unreachable.
    o.set_keep_alive(Duration::from_secs(s.keep_alive.as_secs()));
    if !s.client_id.is_empty() {
        o.set_clean_session(s.clean_session);
    }
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_inflight(s.inflight.max(1));
    o.set_manual_acks(s.manual_acks);
    let username = s.username.map(String::from).or(url.username.clone());
    let password = s.password.or(url.password.as_ref());
    if username.is_some() || password.is_some() {
        o.set_credentials(
            username.unwrap_or_default(),
            password.map(Secret::expose).unwrap_or_default(),
        );
    }
    if url.tls {
        o.set_transport(Transport::tls_with_config(tls_config()?.into()));
    }
    Ok(o)
}

/// TLS with the system's trusted roots, through ring.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "mqtts:// needs trusted root certificates and none were found on this system (install ca-certificates, or set SSL_CERT_FILE)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connection error as a sentence; rumqttc's errors never carry the credentials.
pub fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker refused the connection: {}",
            match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorized",
                ConnectReturnCode::BadClientId => "client id rejected",
                ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not supported",
                ConnectReturnCode::ServiceUnavailable => "server unavailable",
                ConnectReturnCode::Success => "success code",
            }
        ),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the broker running?)".into()
        }
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the broker closed the connection".into()
        }
        other => other.to_string(),
    }
}

/// An error no reconnect can fix: wrong credentials, a client id or protocol the broker
/// will not take.
pub fn is_fatal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::BadClientId
                | ConnectReturnCode::RefusedProtocolVersion
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_hides_credentials() {
        let u = BrokerUrl::parse(
            "url",
            "mqtt://alice:p%40ss@broker.example:1884?client_id=c1",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.host, "broker.example");
        assert_eq!(u.port, 1884);
        assert!(!u.tls);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(u.client_id.as_deref(), Some("c1"));
        assert_eq!(u.to_string(), "mqtt://broker.example:1884");
        assert!(!format!("{u:?}").contains("p@ss"));
        let t = BrokerUrl::parse("url", "mqtts://h").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.port, t.tls), (8883, true));
        // Fluvio's overview example writes the host alone.
        let b = BrokerUrl::parse("url", "mqtt.hsl.fi").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.to_string(), "mqtt://mqtt.hsl.fi:1883");
        let b = BrokerUrl::parse("url", "127.0.0.1:1884").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 1884));
    }

    #[test]
    fn refuses_bad_urls_without_echoing_them() {
        for bad in [
            "http://u:hunter2@h",
            "mqtt://u:hunter2@h/path",
            "mqtt://u:hunter2@h?x=1",
            "not a url",
        ] {
            let e = BrokerUrl::parse("mqtt.url", bad)
                .err()
                .map(|e| e.to_string());
            let e = e.unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(e.starts_with("mqtt.url: "), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn qos_and_keep_alive_bounds() {
        assert!(qos("qos", 1).is_ok());
        let e = qos("qos", 2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("qos: 2 (exactly once) is not supported"),
            "{e}"
        );
        assert!(keep_alive("timeout", Seconds::from_millis(500)).is_err());
        assert!(keep_alive("timeout", Seconds::from_millis(0)).is_ok());
        assert_eq!(generated_client_id().len(), 23);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "******");
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"******\"")
        );
    }
}

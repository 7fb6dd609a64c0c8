//! What rabbitmq-source and rabbitmq-sink share: where the broker is, written either as an
//! `amqp://` / `amqps://` URL or with Eventflux's options (`host`, `port`, `username`,
//! `password`, `vhost`), with the credentials kept out of every log line, error and
//! `--check`; and (feature `client`) connecting with lapin.

use std::fmt;

use runnel_config::{FieldError, secrets::Secret};

/// The broker and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    pub vhost: String,
}

/// The connection options a section gives, as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Parts<'a> {
    pub url: Option<&'a str>,
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub vhost: Option<&'a str>,
}

impl Address {
    /// The address from a section's options. `url` and `host` are alternatives; `port`,
    /// `username`, `password` and `vhost` win over what the URL says. Errors never repeat
    /// the URL (it may hold a password).
    pub fn from_parts(p: Parts<'_>) -> Result<Self, FieldError> {
        let mut a = match (p.url, p.host) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "host",
                    "cannot be used with url: give one of them",
                ));
            }
            (None, None) => {
                return Err(FieldError::new(
                    "url",
                    "missing: give the broker as url (amqp://host:5672/vhost) or as host (and port, vhost)",
                ));
            }
            (Some(u), None) => Self::parse("url", u)?,
            (None, Some(h)) => {
                if h.trim().is_empty() || h.contains(['/', '@', ' ']) {
                    return Err(FieldError::new(
                        "host",
                        "must be a host name or an IP address (a URL goes in url)",
                    ));
                }
                Address {
                    tls: false,
                    host: h.trim().to_string(),
                    port: 5672,
                    username: "guest".into(),
                    password: Secret::new("guest"),
                    vhost: "/".into(),
                }
            }
        };
        if let Some(port) = p.port {
            if port == 0 {
                return Err(FieldError::new("port", "must be 1 to 65535"));
            }
            a.port = port;
        }
        if let Some(u) = p.username {
            a.username = u.to_string();
        }
        if let Some(pw) = p.password {
            a.password = pw.clone();
        }
        if let Some(v) = p.vhost {
            if v.is_empty() {
                return Err(FieldError::new(
                    "vhost",
                    "is empty: the default vhost is \"/\"",
                ));
            }
            a.vhost = v.to_string();
        }
        Ok(a)
    }

    fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let url = url::Url::parse(s.trim())
            .map_err(|e| FieldError::new(field, format!("invalid URL: {e}")))?;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => {
                return Err(FieldError::new(
                    field,
                    format!("unsupported scheme {other:?}: use amqp:// or amqps://"),
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(FieldError::new(field, "the URL has no host")),
        };
        if url.query().is_some() {
            return Err(FieldError::new(
                field,
                "URL parameters are not read: give the options in the section",
            ));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        // The AMQP URI spec: an empty path is the default vhost "/", otherwise the path
        // without its first slash, percent-decoded ("%2f" is "/").
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        let vhost = if path.is_empty() {
            "/".to_string()
        } else {
            url::form_urlencoded::parse(format!("x={}", path.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok(Address {
            tls,
            host,
            port: url.port().unwrap_or(if tls { 5671 } else { 5672 }),
            username: if url.username().is_empty() {
                "guest".into()
            } else {
                decode(url.username())
            },
            password: Secret::new(url.password().map(decode).unwrap_or_else(|| "guest".into())),
            vhost,
        })
    }

    /// The URI lapin connects to, credentials included: never log it.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{scheme}://{}:{}@{host}:{}/{}",
            enc(&self.username),
            enc(self.password.expose()),
            self.port,
            enc(&self.vhost)
        )
    }
}

/// The broker without credentials: what logs and errors show.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        let vhost = url::form_urlencoded::byte_serialize(self.vhost.as_bytes()).collect::<String>();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}/{vhost}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}/{vhost}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Checks a queue or exchange name: at most 255 bytes, as AMQP 0-9-1 short strings are.
pub fn name(field: &str, s: &str) -> Result<(), FieldError> {
    if s.len() > 255 {
        return Err(FieldError::new(field, "is longer than 255 bytes"));
    }
    Ok(())
}

#[cfg(feature = "client")]
mod client {
    use super::Address;

    /// Connects to the broker (heartbeats as the broker proposes them).
    pub async fn connect(a: &Address, name: &str) -> Result<lapin::Connection, lapin::Error> {
        let props = lapin::ConnectionProperties::default().with_connection_name(name.into());
        lapin::Connection::connect(&a.uri(), props).await
    }

    /// A lapin error for people. lapin's errors carry no URI, so no credentials.
    pub fn describe(e: &lapin::Error) -> String {
        e.to_string()
    }

    /// Whether retrying cannot help: the broker refused the login or the vhost.
    pub fn is_fatal(e: &lapin::Error) -> bool {
        let s = e.to_string();
        s.contains("ACCESS_REFUSED") || s.contains("NOT_ALLOWED") || s.contains("authentication")
    }
}

#[cfg(feature = "client")]
pub use client::{connect, describe, is_fatal};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_eventflux_options_give_the_same_address() {
        let a = Address::from_parts(Parts {
            url: Some("amqp://runnel:p%40ss@broker:5673/%2f"),
            ..Parts::default()
        })
        .unwrap();
        let pw = Secret::new("p@ss");
        let b = Address::from_parts(Parts {
            host: Some("broker"),
            port: Some(5673),
            username: Some("runnel"),
            password: Some(&pw),
            vhost: Some("/"),
            ..Parts::default()
        })
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "amqp://broker:5673/%2F");
        assert_eq!(a.uri(), "amqp://runnel:p%40ss@broker:5673/%2F");
        let d = Address::from_parts(Parts {
            url: Some("amqps://h"),
            ..Parts::default()
        })
        .unwrap();
        assert_eq!(
            (d.port, d.vhost.as_str(), d.username.as_str()),
            (5671, "/", "guest")
        );
        let e = Address::from_parts(Parts {
            url: Some("http://u:topsecret@h"),
            ..Parts::default()
        })
        .unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}

//! What redis-source and redis-sink share: where the server is, written as a `redis://` /
//! `rediss://` URL or with eKuiper's options (`addr`, `password`, `db`), with the password
//! kept out of every log line, error and `--check`; and (feature `client`) connecting.

use std::fmt;

use runnel_config::{FieldError, secrets::Secret};

/// The server and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The ACL user; `None` logs in as the default user.
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
}

/// The connection options a section gives, as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Parts<'a> {
    pub url: Option<&'a str>,
    /// eKuiper's `addr`: `host:port`, optionally as `tcp://host:port`.
    pub addr: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub db: Option<i64>,
}

impl Address {
    /// The address from a section's options. `url` and `addr` are alternatives (neither
    /// means redis://127.0.0.1:6379); `username`, `password` and `db` win over what the URL
    /// says. Errors never repeat the URL (it may hold a password).
    pub fn from_parts(p: Parts<'_>) -> Result<Self, FieldError> {
        let mut a = match (p.url, p.addr) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "addr",
                    "cannot be used with url: give one of them",
                ));
            }
            (Some(u), None) => Self::parse("url", u)?,
            (None, Some(a)) => {
                let a = a.trim();
                let a = a.strip_prefix("tcp://").unwrap_or(a);
                if a.contains("://") || a.contains(['/', '@']) {
                    return Err(FieldError::new(
                        "addr",
                        "must be host:port (a redis:// URL goes in url)",
                    ));
                }
                Self::parse("addr", &format!("redis://{a}"))?
            }
            (None, None) => Self::parse("url", "redis://127.0.0.1:6379")?,
        };
        if let Some(u) = p.username {
            a.username = Some(u.to_string());
        }
        if let Some(pw) = p.password {
            a.password = Some(pw.clone());
        }
        if let Some(db) = p.db {
            if !(0..=1_000_000).contains(&db) {
                return Err(FieldError::new(
                    "db",
                    "must be a database number, 0 or more",
                ));
            }
            a.db = db;
        }
        Ok(a)
    }

    fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            FieldError::new(
                field,
                format!("is not a URL ({e}); write redis://[user:password@]host[:port][/db]"),
            )
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            s => {
                return Err(FieldError::new(
                    field,
                    format!("has scheme {s:?}: write redis:// or rediss:// (TLS)"),
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(FieldError::new(field, "names no host")),
        };
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            d => d.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                FieldError::new(
                    field,
                    "has a path that is not a database number (/0, /1, ...)",
                )
            })?,
        };
        Ok(Address {
            tls,
            host,
            port: url.port().unwrap_or(6379),
            username: Some(url.username()).filter(|u| !u.is_empty()).map(decode),
            password: url.password().map(|p| Secret::new(decode(p))),
            db,
        })
    }

    /// The URL the client connects with, credentials included: never log it.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p.expose())),
            (None, Some(p)) => format!(":{}@", enc(p.expose())),
            (Some(u), None) => format!("{}@", enc(u)),
            (None, None) => String::new(),
        };
        format!("{scheme}://{auth}{host}:{}/{}", self.port, self.db)
    }
}

/// The server without credentials: what logs and errors show.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "client")]
mod connecting {
    use std::time::Duration;

    use super::Address;

    /// The client for the address (its crypto provider set up for rediss://).
    pub fn client(a: &Address) -> Result<redis::Client, redis::RedisError> {
        if a.tls {
            // rustls needs its crypto provider named once per process; a second call (or
            // another library's) is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        redis::Client::open(a.uri())
    }

    /// A connection with its own timeouts: `response` bounds every reply (longer than any
    /// BLOCK the caller sends), and connecting takes at most 5 s.
    pub async fn connect(
        a: &Address,
        response: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        let client = client(a)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(response));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A redis error for people, with the password masked should the client ever show it.
    pub fn describe(a: &Address, e: &redis::RedisError) -> String {
        let s = if e.kind() == redis::ErrorKind::AuthenticationFailed {
            "the server refused the username or password (check username and password)".to_string()
        } else if let (Some(code), Some(detail)) = (e.code(), e.detail()) {
            // The server's own words (`WRONGTYPE Operation against a key ...`).
            format!("{code} {detail}")
        } else {
            e.to_string()
        };
        match &a.password {
            Some(p) if !p.expose().is_empty() => s.replace(p.expose(), "***"),
            _ => s,
        }
    }

    /// Whether retrying cannot help: the server refused the login or the user's rights.
    pub fn is_fatal(e: &redis::RedisError) -> bool {
        if e.kind() == redis::ErrorKind::AuthenticationFailed {
            return true;
        }
        matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
            || e.to_string().contains("WRONGPASS")
    }
}

#[cfg(feature = "client")]
pub use connecting::{client, connect, describe, is_fatal};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_ekuiper_options_give_the_same_address() {
        let a = Address::from_parts(Parts {
            url: Some("redis://:p%40ss@cache:6380/2"),
            ..Parts::default()
        })
        .unwrap();
        let pw = Secret::new("p@ss");
        let b = Address::from_parts(Parts {
            addr: Some("tcp://cache:6380"),
            password: Some(&pw),
            db: Some(2),
            ..Parts::default()
        })
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "redis://cache:6380/2");
        assert_eq!(a.uri(), "redis://:p%40ss@cache:6380/2");
        let d = Address::from_parts(Parts::default()).unwrap();
        assert_eq!(d.to_string(), "redis://127.0.0.1:6379/0");
        let e = Address::from_parts(Parts {
            url: Some("http://u:topsecret@h"),
            ..Parts::default()
        })
        .unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        let e = Address::from_parts(Parts {
            url: Some("redis://u:topsecret@h/x"),
            ..Parts::default()
        })
        .unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}

//! What websocket-source and websocket-sink share: the `ws://` / `wss://` endpoint and its
//! headers, checked with errors that name the field; and (feature `client`) connecting with
//! tokio-tungstenite, with error text that carries neither the URL's password nor a header's
//! value.

use runnel_config::{FieldError, parse_header_lines};
use url::Url;

/// The endpoint, checked: a `ws://` or `wss://` URL with a host.
pub fn endpoint(field: &str, s: &str) -> Result<Url, FieldError> {
    let url =
        Url::parse(s.trim()).map_err(|e| FieldError::new(field, format!("invalid URL: {e}")))?;
    match url.scheme() {
        "ws" | "wss" => {}
        "http" | "https" => {
            return Err(FieldError::new(
                field,
                format!(
                    "{}:// is not a WebSocket URL: use ws:// or wss:// (http-source polls http:// endpoints)",
                    url.scheme()
                ),
            ));
        }
        other => {
            return Err(FieldError::new(
                field,
                format!("unsupported scheme {other:?}: use ws:// or wss://"),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new(field, "the URL has no host"));
    }
    if url.fragment().is_some() {
        return Err(FieldError::new(
            field,
            "a WebSocket URL has no #fragment (RFC 6455)",
        ));
    }
    Ok(url)
}

/// The endpoint as it may be shown: without a password.
pub fn shown(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("****"));
    }
    u.to_string()
}

/// The handshake's extra headers, each written "Name: value" (Fluvio's form), checked.
pub fn headers(field: &str, lines: &[String]) -> Result<Vec<(String, String)>, FieldError> {
    let parsed = parse_header_lines(field, lines)?;
    for (i, (k, v)) in parsed.iter().enumerate() {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("invalid header name {k:?}"),
            ));
        }
        // The value may hold a secret: never echo it.
        if http::HeaderValue::from_str(v).is_err() {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                "invalid header value (control characters?)",
            ));
        }
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "sec-websocket-key" | "sec-websocket-version" | "upgrade" | "connection" | "host"
        ) {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("{k} is set by the WebSocket handshake itself"),
            ));
        }
    }
    Ok(parsed)
}

/// The subprotocol, checked: a token (RFC 6455 section 4.1).
pub fn subprotocol(field: &str, s: &str) -> Result<(), FieldError> {
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if s.is_empty() || !s.chars().all(token) {
        return Err(FieldError::new(
            field,
            format!("{s:?} is not a subprotocol name (a token without spaces or separators)"),
        ));
    }
    Ok(())
}

#[cfg(feature = "client")]
pub use connecting::*;

#[cfg(feature = "client")]
mod connecting {
    use std::time::Duration;

    use tokio::net::TcpStream;
    use tokio_tungstenite::{
        MaybeTlsStream, WebSocketStream,
        tungstenite::{
            self, Error, client::IntoClientRequest, error::CapacityError, http,
            protocol::WebSocketConfig,
        },
    };
    use url::Url;

    /// An open connection.
    pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// Why a connection could not be made.
    #[derive(Debug)]
    pub struct ConnectError {
        pub text: String,
        /// The server refused the credentials (401 or 403): every attempt would fail alike.
        pub refused: bool,
    }

    impl From<String> for ConnectError {
        fn from(text: String) -> Self {
            ConnectError {
                text,
                refused: false,
            }
        }
    }

    impl std::fmt::Display for ConnectError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.text)
        }
    }

    /// Where to connect and how: made once from the config, used for every (re)connect.
    #[derive(Debug)]
    pub struct Target {
        url: Url,
        headers: Vec<(String, String)>,
        subprotocol: Option<String>,
        config: WebSocketConfig,
        connect_timeout: Duration,
    }

    impl Target {
        /// `max_message` bounds one incoming message (and frame): a peer cannot make the
        /// connector hold more.
        pub fn new(
            url: Url,
            headers: Vec<(String, String)>,
            subprotocol: Option<String>,
            max_message: usize,
            connect_timeout: Duration,
        ) -> Self {
            let config = WebSocketConfig::default()
                .max_message_size(Some(max_message))
                .max_frame_size(Some(max_message));
            Target {
                url,
                headers,
                subprotocol,
                config,
                connect_timeout,
            }
        }

        /// The endpoint as it may be shown (no password).
        pub fn shown(&self) -> String {
            super::shown(&self.url)
        }

        /// Opens a connection: TCP (and TLS for wss://) and the handshake, within the
        /// connect timeout.
        pub async fn connect(&self) -> Result<Socket, ConnectError> {
            if self.url.scheme() == "wss" {
                // rustls needs its crypto provider named once per process; a second call
                // (or another library's) is fine.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            let mut request = self
                .url
                .as_str()
                .into_client_request()
                .map_err(|e| describe(&e))?;
            let h = request.headers_mut();
            for (k, v) in &self.headers {
                let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(v),
                ) else {
                    return Err(format!("header {k} cannot be sent").into());
                };
                h.append(name, value);
            }
            if let Some(p) = &self.subprotocol {
                let value = http::HeaderValue::from_str(p)
                    .map_err(|_| format!("subprotocol {p:?} cannot be sent"))?;
                h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
            }
            let connecting =
                tokio_tungstenite::connect_async_with_config(request, Some(self.config), true);
            match tokio::time::timeout(self.connect_timeout, connecting).await {
                Err(_) => Err(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )
                .into()),
                Ok(Err(e)) => Err(ConnectError {
                    text: describe(&e),
                    refused: is_refusal(&e),
                }),
                Ok(Ok((socket, _response))) => Ok(socket),
            }
        }
    }

    /// An error as one sentence. tungstenite's errors hold neither the URL nor the request
    /// headers; an HTTP refusal is told by its status alone (its body may echo a token).
    pub fn describe(e: &Error) -> String {
        match e {
            Error::Http(response) => {
                let s = response.status();
                let hint = match s.as_u16() {
                    401 | 403 => " (check the headers that carry credentials)",
                    404 => " (check the path)",
                    _ => "",
                };
                format!(
                    "the server refused the WebSocket upgrade with {} {}{hint}",
                    s.as_u16(),
                    s.canonical_reason().unwrap_or("")
                )
            }
            Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => format!(
                "a message of {size} bytes is over the maximum of {max_size} (max_record_size)"
            ),
            Error::Io(io) => format!("connection failed: {io}"),
            Error::ConnectionClosed | Error::AlreadyClosed => "the connection was closed".into(),
            Error::Url(u) => format!("invalid endpoint: {u}"),
            Error::Tls(t) => format!("TLS failed: {t}"),
            Error::Protocol(p) => format!("WebSocket protocol error: {p}"),
            other => other.to_string(),
        }
    }

    /// Whether the server refused the credentials (401 or 403 to the upgrade): every
    /// attempt would fail alike, so the connector stops instead of retrying. Other refusals
    /// (a 404 from a proxy whose backend is starting) are retried.
    pub fn is_refusal(e: &Error) -> bool {
        matches!(e, Error::Http(r) if matches!(r.status().as_u16(), 401 | 403))
    }

    /// The reason a peer gave for closing, for a log line.
    pub fn close_reason(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
        match frame {
            None => "the server closed the connection".into(),
            Some(f) if f.reason.is_empty() => {
                format!("the server closed the connection ({})", u16::from(f.code))
            }
            Some(f) => format!(
                "the server closed the connection ({}: {})",
                u16::from(f.code),
                f.reason
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(endpoint("e", "ws://127.0.0.1:9000/x").is_ok());
        assert!(endpoint("e", "wss://example.com/feed?a=1").is_ok());
        let e = endpoint("e", "http://example.com").unwrap_err();
        assert!(e.to_string().contains("not a WebSocket URL"), "{e}");
        let e = endpoint("e", "ftp://example.com").unwrap_err();
        assert!(e.to_string().contains("use ws:// or wss://"), "{e}");
        let e = endpoint("e", "ws://example.com/#x").unwrap_err();
        assert!(e.to_string().contains("fragment"), "{e}");
    }

    #[test]
    fn password_is_not_shown() {
        let u = endpoint("e", "wss://me:hunter2@example.com/x").unwrap();
        let s = shown(&u);
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("me:****@"), "{s}");
    }

    #[test]
    fn header_checks() {
        let ok = headers("h", &["x-secret-token: abc123".into()]).unwrap();
        assert_eq!(ok, vec![("x-secret-token".into(), "abc123".into())]);
        let e = headers("h", &["Upgrade: h2c".into()]).unwrap_err();
        assert!(
            e.to_string().contains("set by the WebSocket handshake"),
            "{e}"
        );
        assert!(subprotocol("s", "graphql-transport-ws").is_ok());
        assert!(subprotocol("s", "a b").is_err());
    }
}

//! What http-source and http-sink share: turning config fields into HTTP types with errors
//! that name the field, and (feature `client`) reqwest error text that never carries the URL
//! (it may hold a token).

use http::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use runnel_config::{FieldError, parse_header_lines};
#[cfg(feature = "sink")]
pub mod sink;

use url::Url;

/// The User-Agent sent when the config gives none.
pub fn default_user_agent(kind: &str) -> String {
    format!("runnel-{kind}/{}", env!("CARGO_PKG_VERSION"))
}

pub fn endpoint(field: &str, s: &str) -> Result<Url, FieldError> {
    let s = s.trim();
    let no_scheme = || {
        FieldError::new(
            field,
            format!("{s:?} has no scheme: write it as http://{s} or https://{s}"),
        )
    };
    let url = Url::parse(s).map_err(|e| match e {
        // `1.2.3.4:port/path` or `host/path`: say what is missing.
        url::ParseError::RelativeUrlWithoutBase => no_scheme(),
        e => FieldError::new(field, format!("invalid URL: {e}")),
    })?;
    // `host:port` parses as scheme `host` with the port as its path.
    let port_as_path = url
        .path()
        .split('/')
        .next()
        .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if !s.contains("://") && port_as_path {
        return Err(no_scheme());
    }
    match url.scheme() {
        "http" | "https" => Ok(url),
        ws @ ("ws" | "wss") => Err(FieldError::new(
            field,
            format!(
                "{ws}:// is a WebSocket URL: websocket-sink sends records to WebSocket servers"
            ),
        )),
        other => Err(FieldError::new(
            field,
            format!("unsupported scheme {other:?}: use http:// or https://"),
        )),
    }
}

pub fn method(field: &str, s: &str) -> Result<Method, FieldError> {
    Method::from_bytes(s.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| FieldError::new(field, format!("invalid HTTP method {s:?}")))
}

pub fn header_map(field: &str, lines: &[String]) -> Result<HeaderMap, FieldError> {
    let mut map = HeaderMap::new();
    for (i, (k, v)) in parse_header_lines(field, lines)?.into_iter().enumerate() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            FieldError::new(
                format!("{field}[{i}]"),
                format!("invalid header name {k:?}"),
            )
        })?;
        // The value may hold a secret: never echo it.
        let value = HeaderValue::from_str(&v).map_err(|_| {
            FieldError::new(
                format!("{field}[{i}]"),
                "invalid header value (control characters?)",
            )
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// An error as one line with its causes, without the URL.
#[cfg(feature = "client")]
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Expands `\n`, `\r`, `\t` and `\\` written literally (as a flag would carry them).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_fields() {
        assert!(endpoint("http.endpoint", "ftp://x").is_err());
        assert!(endpoint("http.endpoint", "http://127.0.0.1:8080/a").is_ok());
        assert!(endpoint("http.endpoint", "https://localhost:8080").is_ok());
        for no_scheme in ["localhost:8086", "127.0.0.1:8086/write", "example.com/in"] {
            let e = endpoint("addr", no_scheme).unwrap_err().to_string();
            assert!(e.contains("has no scheme: write it as http://"), "{e}");
        }
        let e = header_map("http.headers", &["ok: 1".into(), "broken".into()]).unwrap_err();
        assert_eq!(e.path, "http.headers[1]");
        assert_eq!(unescape("\\r\\n"), "\r\n");
    }
}

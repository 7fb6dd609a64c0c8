//! webhook-source's config: an HTTP server that takes records pushed to it (POST or PUT on
//! configured paths) and answers 2xx only once the hub stored them. The binary (feature
//! `run`) does it.

use runnel_codec::{FormatOptions, Split, Way};
use runnel_config::{
    ByteSize, ConnectorKind, Direction, FieldError, Grade, HumanDuration, Validate, secrets::Secret,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The webhook-source connector type.
#[derive(Debug)]
pub struct WebhookSource;

impl ConnectorKind for WebhookSource {
    const TYPE: &'static str = "webhook-source";
    const ALIASES: &'static [&'static str] = &["http-push", "httppush"];
    const SECTION: &'static str = "webhook";
    const SUMMARY: &'static str =
        "Receives records pushed over HTTP, answering only once the hub stored them.";
    const GRADE: Grade = Grade::Alpha;
    const DIRECTION: Direction = Direction::Source;
    /// Replicas behind one Service each take the requests sent to them.
    const SHARES_INPUT: bool = true;
    type Config = WebhookSourceConfig;
}

/// Options of webhook-source (the `webhook:` section).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSourceConfig {
    /// The address to listen on, HOST:PORT (or :PORT, as eKuiper writes it, for every
    /// interface). Default 0.0.0.0:8080. The health server keeps its own port (9100).
    #[serde(default = "default_listen", alias = "server")]
    pub listen: String,
    /// The paths that take records; anything else is 404. Default ["/"].
    #[serde(default)]
    pub paths: Vec<String>,
    /// One path, instead of paths (eKuiper's endpoint).
    #[serde(alias = "endpoint")]
    pub path: Option<String>,
    /// The methods taken: POST, PUT or PATCH. Default [POST, PUT]; any other is 405.
    #[serde(default)]
    pub methods: Vec<String>,
    /// One method, instead of methods (eKuiper's method).
    pub method: Option<String>,
    /// The largest body taken; a longer one is refused with 413 and nothing of it stored.
    /// Default 1MiB.
    #[serde(
        default = "default_max_body",
        alias = "max-body",
        alias = "max_body_size"
    )]
    pub max_body: ByteSize,
    /// A bearer token every request must carry (`Authorization: Bearer TOKEN`); write it
    /// as ${{ secrets.NAME }}. A request without it is 401.
    pub token: Option<Secret>,
    /// A signature every request must carry: the HMAC-SHA256 of its body, in hex.
    pub hmac: Option<HmacOptions>,
    /// How many records one body holds: none (one, the default), lines (one per line,
    /// newline-delimited JSON) or array (a JSON array, one per element).
    #[serde(default)]
    pub split: Split,
    /// What each piece is: bytes (the default), text, json, csv or cloudevents. A body
    /// with a piece that does not decode is refused with 400 and the reason; none of it is
    /// stored, so the sender can correct it and send it again.
    #[serde(default)]
    pub format: FormatOptions,
    /// A request header whose value becomes the records' key (X-Request-Id, say).
    #[serde(alias = "key-header")]
    pub key_header: Option<String>,
    /// Request headers copied into each record's headers (by their lower-case names).
    /// Content-Type always is, with http-method and http-path.
    #[serde(default)]
    pub headers: Vec<String>,
    /// The longest a request waits for the hub to store its records; then it is answered
    /// 503 and the sender should send it again (the records may still be stored: at least
    /// once). Default 30s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// How many requests are read and stored at once; more wait their turn (memory stays
    /// within concurrency × max_body). Default 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

/// The signature check.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacOptions {
    /// The shared secret; write it as ${{ secrets.NAME }}.
    pub secret: Secret,
    /// The header carrying the signature. Default X-Hub-Signature-256 (GitHub's).
    #[serde(default = "default_hmac_header")]
    pub header: String,
    /// What the header's value starts with before the hex digest. Default "sha256=";
    /// write "" for a bare digest.
    #[serde(default = "default_hmac_prefix")]
    pub prefix: String,
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_max_body() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_millis(30_000)
}
fn default_concurrency() -> u32 {
    64
}
fn default_hmac_header() -> String {
    "X-Hub-Signature-256".into()
}
fn default_hmac_prefix() -> String {
    "sha256=".into()
}

/// The methods a webhook can take a body with.
const METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];

impl WebhookSourceConfig {
    /// The address to listen on, checked.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, FieldError> {
        let text = match self.listen.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.listen.clone(),
        };
        text.parse().map_err(|_| {
            FieldError::new(
                "listen",
                format!(
                    "{:?} is not an address to listen on: write HOST:PORT, such as 0.0.0.0:8080",
                    self.listen
                ),
            )
        })
    }

    /// The paths that take records.
    pub fn all_paths(&self) -> Vec<String> {
        match (&self.path, self.paths.is_empty()) {
            (Some(p), _) => vec![p.clone()],
            (None, false) => self.paths.clone(),
            (None, true) => vec!["/".into()],
        }
    }

    /// The methods taken, upper-case.
    pub fn all_methods(&self) -> Vec<String> {
        match (&self.method, self.methods.is_empty()) {
            (Some(m), _) => vec![m.to_ascii_uppercase()],
            (None, false) => self
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            (None, true) => vec!["POST".into(), "PUT".into()],
        }
    }
}

impl Validate for WebhookSourceConfig {
    fn validate(&self) -> Result<(), FieldError> {
        self.listen_addr()?;
        if self.path.is_some() && !self.paths.is_empty() {
            return Err(FieldError::new(
                "path",
                "and paths are both given: write the paths in paths alone",
            ));
        }
        let field = if self.path.is_some() { "path" } else { "paths" };
        for p in self.all_paths() {
            if !p.starts_with('/') {
                return Err(FieldError::new(
                    field,
                    format!("{p:?} does not start with /: write a path such as /events"),
                ));
            }
            if p.contains(['{', '}', '*', '?', '#']) {
                return Err(FieldError::new(
                    field,
                    format!("{p:?} holds a pattern or query character: write a plain path"),
                ));
            }
        }
        if self.method.is_some() && !self.methods.is_empty() {
            return Err(FieldError::new(
                "method",
                "and methods are both given: write the methods in methods alone",
            ));
        }
        let field = if self.method.is_some() {
            "method"
        } else {
            "methods"
        };
        for m in self.all_methods() {
            if !METHODS.contains(&m.as_str()) {
                return Err(FieldError::new(
                    field,
                    format!("{m:?} is not a method that carries records: use POST, PUT or PATCH"),
                ));
            }
        }
        if self.max_body.0 == 0 {
            return Err(FieldError::new(
                "max_body",
                "is 0: no body would be taken; give a size such as 1MiB",
            ));
        }
        if let Some(t) = &self.token
            && t.expose().is_empty()
        {
            return Err(FieldError::new(
                "token",
                "is empty: every request would pass; give a token or leave token out",
            ));
        }
        if let Some(h) = &self.hmac {
            if h.secret.expose().is_empty() {
                return Err(FieldError::new(
                    "hmac.secret",
                    "is empty: anyone could sign; give the shared secret",
                ));
            }
            header_name("hmac.header", &h.header)?;
        }
        if let Some(k) = &self.key_header {
            header_name("key_header", k)?;
        }
        for h in &self.headers {
            header_name("headers", h)?;
        }
        if self.timeout.0.is_zero() {
            return Err(FieldError::new(
                "timeout",
                "is 0: no request could wait for the hub; give a duration such as 30s",
            ));
        }
        if self.concurrency == 0 {
            return Err(FieldError::new(
                "concurrency",
                "is 0: no request would be taken; give 1 or more",
            ));
        }
        self.format.check("format", Way::Read)
    }
}

/// Checks an HTTP header name (RFC 9110 token characters).
fn header_name(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{name:?} is not an HTTP header name"),
        ))
    }
}

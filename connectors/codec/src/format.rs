//! Formats: what one framed piece of bytes means, and how a record is written back out.
//!
//! - `bytes`: as they are. `text`: UTF-8, checked. `json`: one JSON value, checked.
//! - `csv`: rows with a header row (or named `columns`), a delimiter and quoting, typed
//!   columns, to and from JSON objects (`{"name":"ada","age":36}`).
//! - `cloudevents` (CloudEvents 1.0): in the hub an event is a record in binary mode, its
//!   attributes in `ce-` headers and its data as the value. `structured` reads and writes
//!   the JSON form (`{"specversion":"1.0","id":...,"data":...}`); `binary` makes events of
//!   plain data with `source` and `type` from the config and an `id` of its own.
//!
//! A piece that does not decode (or a record that does not encode) is an error with the
//! reason; the connector's error policy decides what happens to it.

use base64::Engine as _;
use bytes::Bytes;
use runnel_core::{FieldError, Record};

use crate::CodecError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `format` option: a name (`format: json`) or a mapping with the format's own options
/// (`format: {type: csv, csv: {delimiter: ";"}}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
pub struct FormatOptions {
    #[serde(rename = "type")]
    pub kind: FormatKind,
    pub csv: CsvOptions,
    pub cloudevents: CloudEventsOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    #[default]
    Bytes,
    Text,
    Json,
    Csv,
    #[serde(alias = "cloud-events")]
    Cloudevents,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// The field separator (one ASCII character). Default `,`.
    pub delimiter: char,
    /// The quote character (one ASCII character). Default `"`.
    pub quote: char,
    /// Whether the first row names the columns (read) and is written first in each file
    /// (write). Default true.
    pub header: bool,
    /// The columns in order with their types; without a header row they name the fields,
    /// with one they give types to the columns named. Writing needs them.
    pub columns: Vec<Column>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            quote: '"',
            header: true,
            columns: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    /// string (default), integer, number or boolean; an empty field is null.
    #[serde(default, rename = "type")]
    pub kind: ColumnType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CloudEventsOptions {
    pub mode: CloudEventsMode,
    /// The `source` attribute of events made here (binary mode), and of events written
    /// from records without a `ce-source` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Their `type` attribute, likewise.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Their `datacontenttype`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloudEventsMode {
    #[default]
    Structured,
    Binary,
}

impl<'de> Deserialize<'de> for FormatOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(rename = "type")]
            kind: FormatKind,
            #[serde(default)]
            csv: CsvOptions,
            #[serde(default)]
            cloudevents: CloudEventsOptions,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Name(FormatKind),
            Full(Full),
        }
        match Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected bytes, text, json, csv or cloudevents, or {type: ..., csv: {...}, cloudevents: {...}}",
            )
        })? {
            Repr::Name(kind) => Ok(FormatOptions {
                kind,
                ..Default::default()
            }),
            Repr::Full(f) => Ok(FormatOptions {
                kind: f.kind,
                csv: f.csv,
                cloudevents: f.cloudevents,
            }),
        }
    }
}

/// Written back as it would be given: the name alone, or with the options of its kind.
impl Serialize for FormatOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.kind {
            FormatKind::Csv => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", &self.kind)?;
                m.serialize_entry("csv", &self.csv)?;
                m.end()
            }
            FormatKind::Cloudevents => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", &self.kind)?;
                m.serialize_entry("cloudevents", &self.cloudevents)?;
                m.end()
            }
            kind => kind.serialize(s),
        }
    }
}

/// Which way bytes go, for the checks that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Read,
    Write,
}

impl FormatOptions {
    /// The rules serde cannot say; `field` is the option's path (`format`).
    pub fn check(&self, field: &str, way: Way) -> Result<(), FieldError> {
        let csv = &self.csv;
        if self.kind == FormatKind::Csv {
            for (name, c) in [("delimiter", csv.delimiter), ("quote", csv.quote)] {
                if !c.is_ascii() || c == '\n' || c == '\r' {
                    return Err(FieldError::new(
                        format!("{field}.csv.{name}"),
                        "must be one ASCII character, not a line break",
                    ));
                }
            }
            if csv.delimiter == csv.quote {
                return Err(FieldError::new(
                    format!("{field}.csv.quote"),
                    "must differ from the delimiter",
                ));
            }
            if csv.columns.is_empty() && (way == Way::Write || !csv.header) {
                return Err(FieldError::new(
                    format!("{field}.csv.columns"),
                    match way {
                        Way::Write => "writing CSV needs the columns, in order",
                        Way::Read => "reading CSV without a header row needs the columns",
                    },
                ));
            }
        }
        let ce = &self.cloudevents;
        if self.kind == FormatKind::Cloudevents
            && ce.mode == CloudEventsMode::Binary
            && way == Way::Read
        {
            for (name, v) in [("source", &ce.source), ("type", &ce.event_type)] {
                if v.as_deref().is_none_or(str::is_empty) {
                    return Err(FieldError::new(
                        format!("{field}.cloudevents.{name}"),
                        "events made of plain data (mode: binary) need it",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A decoded piece: a record's value and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl Decoded {
    fn value(value: Bytes) -> Self {
        Decoded {
            value,
            headers: Vec::new(),
        }
    }
}

/// Decodes the pieces of one stream (one file, one connection): CSV's header row is the
/// first piece of the stream it belongs to.
#[derive(Debug)]
pub struct Decoder {
    opts: FormatOptions,
    names: Option<Vec<String>>,
}

impl Decoder {
    pub fn new(opts: &FormatOptions) -> Self {
        let names =
            (!opts.csv.header).then(|| opts.csv.columns.iter().map(|c| c.name.clone()).collect());
        Decoder {
            opts: opts.clone(),
            names,
        }
    }

    /// Starts a new stream (a new poll body, a new message, a new connection): with a CSV
    /// header row, the next piece's first row is the header again.
    pub fn reset(&mut self) {
        if self.opts.csv.header {
            self.names = None;
        }
    }

    /// Whether pieces go through unchanged (`bytes`): nothing to check or convert.
    pub fn is_passthrough(&self) -> bool {
        self.opts.kind == FormatKind::Bytes
    }

    /// The records `piece` holds: one, except CSV (a piece may hold several rows, or be the
    /// header row and hold none). `id` is the id of an event made here (binary mode): make
    /// it unique and stable, so a piece read again gets the same id (file-source gives
    /// the file and the offset).
    pub fn decode(&mut self, piece: Bytes, id: &str) -> Result<Vec<Decoded>, CodecError> {
        let mut out = Vec::new();
        self.decode_into(piece, || id.to_string(), &mut out)?;
        Ok(out)
    }

    /// [`Decoder::decode`] onto `out`, asking for the id only when an event is made: the
    /// path of every record, so it allocates nothing of its own for `bytes`.
    pub fn decode_into(
        &mut self,
        piece: Bytes,
        id: impl FnOnce() -> String,
        out: &mut Vec<Decoded>,
    ) -> Result<(), CodecError> {
        match self.opts.kind {
            FormatKind::Bytes => {}
            FormatKind::Text => {
                std::str::from_utf8(&piece).map_err(|source| CodecError::Utf8 {
                    what: "the piece",
                    source,
                })?;
            }
            FormatKind::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(&piece).map_err(|source| {
                    CodecError::Json {
                        what: "the piece",
                        source,
                    }
                })?;
            }
            FormatKind::Csv => return self.csv_rows(&piece, out),
            FormatKind::Cloudevents => match self.opts.cloudevents.mode {
                CloudEventsMode::Structured => {
                    out.push(structured_to_binary(&piece)?);
                    return Ok(());
                }
                CloudEventsMode::Binary => {
                    let ce = &self.opts.cloudevents;
                    let mut headers = vec![
                        header("ce-specversion", "1.0"),
                        header("ce-id", &id()),
                        header("ce-source", ce.source.as_deref().unwrap_or_default()),
                        header("ce-type", ce.event_type.as_deref().unwrap_or_default()),
                    ];
                    if let Some(t) = &ce.datacontenttype {
                        headers.push(header("content-type", t));
                    }
                    out.push(Decoded {
                        value: piece,
                        headers,
                    });
                    return Ok(());
                }
            },
        }
        out.push(Decoded::value(piece));
        Ok(())
    }

    fn csv_rows(&mut self, piece: &[u8], out: &mut Vec<Decoded>) -> Result<(), CodecError> {
        let csv = &self.opts.csv;
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(csv.delimiter as u8)
            .quote(csv.quote as u8)
            .from_reader(piece);
        for row in reader.byte_records() {
            let row = row.map_err(CodecError::Csv)?;
            let fields: Vec<String> = row
                .iter()
                .map(|f| {
                    String::from_utf8(f.to_vec()).map_err(|e| CodecError::Utf8 {
                        what: "a CSV field",
                        source: e.utf8_error(),
                    })
                })
                .collect::<Result<_, _>>()?;
            let Some(names) = &self.names else {
                self.names = Some(fields);
                continue;
            };
            if fields.len() != names.len() {
                return Err(CodecError::Invalid(format!(
                    "a CSV row has {} fields, the header {}",
                    fields.len(),
                    names.len()
                )));
            }
            let mut obj = Map::new();
            for (name, field) in names.iter().zip(fields) {
                let kind = csv
                    .columns
                    .iter()
                    .find(|c| &c.name == name)
                    .map_or(ColumnType::String, |c| c.kind);
                obj.insert(name.clone(), typed(name, field, kind)?);
            }
            out.push(Decoded::value(Bytes::from(
                serde_json::to_vec(&Value::Object(obj)).expect("JSON serialises"),
            )));
        }
        Ok(())
    }
}

fn typed(name: &str, field: String, kind: ColumnType) -> Result<Value, CodecError> {
    if field.is_empty() && kind != ColumnType::String {
        return Ok(Value::Null);
    }
    let bad =
        |what: &str| CodecError::Invalid(format!("CSV column {name:?}: {field:?} is not {what}"));
    Ok(match kind {
        ColumnType::String => Value::String(field),
        ColumnType::Integer => {
            Value::from(field.trim().parse::<i64>().map_err(|_| bad("an integer"))?)
        }
        ColumnType::Number => {
            let n: f64 = field.trim().parse().map_err(|_| bad("a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| bad("a finite number"))?
        }
        ColumnType::Boolean => match field.trim() {
            "true" | "TRUE" | "True" | "1" => Value::Bool(true),
            "false" | "FALSE" | "False" | "0" => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
    })
}

fn header(name: &str, value: &str) -> (String, Bytes) {
    (name.to_string(), Bytes::copy_from_slice(value.as_bytes()))
}

/// The attributes CloudEvents 1.0 requires.
const REQUIRED: [&str; 4] = ["id", "source", "type", "specversion"];

/// A structured-mode event as a binary-mode record: attributes to `ce-` headers (and
/// `datacontenttype` to `content-type`), `data` (or `data_base64`) to the value.
fn structured_to_binary(piece: &[u8]) -> Result<Decoded, CodecError> {
    let invalid = |m: &str| CodecError::Invalid(m.to_string());
    let v: Value = serde_json::from_slice(piece).map_err(|source| CodecError::Json {
        what: "the CloudEvent",
        source,
    })?;
    let Value::Object(mut obj) = v else {
        return Err(invalid("not a CloudEvent: not a JSON object"));
    };
    for a in REQUIRED {
        match obj.get(a) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                return Err(CodecError::Invalid(format!(
                    "not a CloudEvent: the {a:?} attribute is missing or not a string"
                )));
            }
        }
    }
    if obj.get("specversion") != Some(&Value::String("1.0".into())) {
        return Err(invalid("not a CloudEvent 1.0: specversion is not \"1.0\""));
    }
    let value = match (obj.remove("data"), obj.remove("data_base64")) {
        (Some(_), Some(_)) => return Err(invalid("a CloudEvent has both data and data_base64")),
        (Some(Value::String(s)), None) => Bytes::from(s),
        (Some(other), None) => Bytes::from(serde_json::to_vec(&other).expect("JSON serialises")),
        (None, Some(Value::String(b))) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(CodecError::Base64)?,
        ),
        (None, Some(_)) => return Err(invalid("a CloudEvent's data_base64 is not a string")),
        (None, None) => Bytes::new(),
    };
    let mut headers = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        let text = match v {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        let name = if k == "datacontenttype" {
            "content-type".to_string()
        } else {
            format!("ce-{k}")
        };
        headers.push((name, Bytes::from(text)));
    }
    Ok(Decoded { value, headers })
}

/// Writes records in a format; one per output stream (a file), for CSV's header row.
#[derive(Debug)]
pub struct Encoder {
    opts: FormatOptions,
}

impl Encoder {
    pub fn new(opts: &FormatOptions) -> Self {
        Encoder { opts: opts.clone() }
    }

    /// Whether records go out unchanged (`bytes`).
    pub fn is_passthrough(&self) -> bool {
        self.opts.kind == FormatKind::Bytes
    }

    /// The media type of what [`Encoder::encode`] makes (`Content-Type` over HTTP), when
    /// the format says it: `None` for bytes, and for binary-mode events, whose record says.
    pub fn media_type(&self) -> Option<&'static str> {
        match self.opts.kind {
            FormatKind::Bytes => None,
            FormatKind::Text => Some("text/plain; charset=utf-8"),
            FormatKind::Json => Some("application/json"),
            FormatKind::Csv => Some("text/csv"),
            FormatKind::Cloudevents => match self.opts.cloudevents.mode {
                CloudEventsMode::Structured => Some("application/cloudevents+json"),
                CloudEventsMode::Binary => None,
            },
        }
    }

    /// Whether the format is CloudEvents in binary mode: attributes travel as headers.
    pub fn is_binary_event(&self) -> bool {
        self.opts.kind == FormatKind::Cloudevents
            && self.opts.cloudevents.mode == CloudEventsMode::Binary
    }

    /// What starts each output stream: CSV's header row, when it has one.
    pub fn header(&self) -> Option<Vec<u8>> {
        let csv = &self.opts.csv;
        if self.opts.kind != FormatKind::Csv || !csv.header {
            return None;
        }
        let names: Vec<&str> = csv.columns.iter().map(|c| c.name.as_str()).collect();
        Some(csv_row(csv, &names))
    }

    /// One record's payload (without framing). `id` names the record where an event needs
    /// an id it lacks (`topic-partition-offset`).
    pub fn encode(&self, record: &Record, id: &str) -> Result<Vec<u8>, CodecError> {
        let value = &record.value;
        match self.opts.kind {
            FormatKind::Bytes => Ok(value.to_vec()),
            FormatKind::Text => std::str::from_utf8(value)
                .map(|s| s.as_bytes().to_vec())
                .map_err(|source| CodecError::Utf8 {
                    what: "the value",
                    source,
                }),
            FormatKind::Json => serde_json::from_slice::<serde::de::IgnoredAny>(value)
                .map(|_| value.to_vec())
                .map_err(|source| CodecError::Json {
                    what: "the value",
                    source,
                }),
            FormatKind::Csv => {
                let v: Value =
                    serde_json::from_slice(value).map_err(|source| CodecError::Json {
                        what: "the value",
                        source,
                    })?;
                let Value::Object(obj) = v else {
                    return Err(CodecError::Invalid("the value is not a JSON object".into()));
                };
                let fields: Vec<String> = self
                    .opts
                    .csv
                    .columns
                    .iter()
                    .map(|c| match obj.get(&c.name) {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    })
                    .collect();
                let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
                Ok(csv_row(&self.opts.csv, &refs))
            }
            FormatKind::Cloudevents => match self.opts.cloudevents.mode {
                CloudEventsMode::Structured => self.structured(record, id),
                // Binary mode keeps the attributes in headers: the payload is the data.
                CloudEventsMode::Binary => Ok(value.to_vec()),
            },
        }
    }

    fn structured(&self, record: &Record, id: &str) -> Result<Vec<u8>, CodecError> {
        let ce = &self.opts.cloudevents;
        let mut obj = Map::new();
        obj.insert("specversion".into(), Value::from("1.0"));
        for (k, v) in &record.headers {
            let text = String::from_utf8_lossy(v).into_owned();
            if let Some(attr) = k.strip_prefix("ce-") {
                obj.insert(attr.to_string(), Value::String(text));
            } else if k.eq_ignore_ascii_case("content-type") {
                obj.insert("datacontenttype".into(), Value::String(text));
            }
        }
        let defaults = [
            ("id", Some(id)),
            ("source", ce.source.as_deref()),
            ("type", ce.event_type.as_deref()),
            ("datacontenttype", ce.datacontenttype.as_deref()),
        ];
        for (attr, v) in defaults {
            if let (false, Some(v)) = (obj.contains_key(attr), v) {
                obj.insert(attr.into(), Value::from(v));
            }
        }
        for a in REQUIRED {
            if !obj.contains_key(a) {
                return Err(CodecError::Invalid(format!(
                    "the record has no ce-{a} header and format.cloudevents.{a} is not set"
                )));
            }
        }
        let json_data = obj
            .get("datacontenttype")
            .and_then(Value::as_str)
            .is_none_or(|t| t.contains("json"));
        match serde_json::from_slice::<Value>(&record.value) {
            Ok(data) if json_data => {
                obj.insert("data".into(), data);
            }
            _ => match std::str::from_utf8(&record.value) {
                Ok(s) if !json_data => {
                    obj.insert("data".into(), Value::from(s));
                }
                _ => {
                    let b = base64::engine::general_purpose::STANDARD.encode(&record.value);
                    obj.insert("data_base64".into(), Value::from(b));
                }
            },
        }
        Ok(serde_json::to_vec(&Value::Object(obj)).expect("JSON serialises"))
    }
}

fn csv_row(csv: &CsvOptions, fields: &[&str]) -> Vec<u8> {
    let mut w = ::csv::WriterBuilder::new()
        .delimiter(csv.delimiter as u8)
        .quote(csv.quote as u8)
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(fields).expect("writing to memory");
    let mut row = w.into_inner().expect("writing to memory");
    if row.last() == Some(&b'\n') {
        row.pop();
    }
    row
}

//! Splitting one message body into pieces before decoding: a body pushed to a webhook, a
//! WebSocket message, may carry one record or many (`[{...},{...}]`, or one JSON document
//! per line). The pieces share the body's buffer; nothing is copied.

use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::CodecError;

/// The `split` option: how many records one body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The body is one piece (the default).
    #[default]
    None,
    /// One piece per line (`\n` or `\r\n`); empty lines are skipped. Newline-delimited
    /// JSON (`ndjson`, `jsonl`) is this.
    #[serde(alias = "ndjson", alias = "jsonl", alias = "newline")]
    Lines,
    /// A JSON array: one piece per element, each element's JSON text as it was sent. A body
    /// that is not an array is one piece.
    #[serde(alias = "json-array")]
    Array,
}

impl Split {
    /// The pieces of `body`, in order. With `array`, a body that starts with `[` and is not
    /// a JSON array is an error; the whole body is refused, none of it taken.
    pub fn pieces(self, body: Bytes) -> Result<Vec<Bytes>, CodecError> {
        match self {
            Split::None => Ok(vec![body]),
            Split::Lines => Ok(lines(body)),
            Split::Array => array(body),
        }
    }
}

fn lines(body: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let ends = body
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .chain(std::iter::once(body.len()));
    for end in ends {
        let mut e = end;
        if e > start && body[e - 1] == b'\r' {
            e -= 1;
        }
        if e > start {
            out.push(body.slice(start..e));
        }
        start = end + 1;
    }
    out
}

fn array(body: Bytes) -> Result<Vec<Bytes>, CodecError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.is_none_or(|i| body[i] != b'[') {
        return Ok(vec![body]);
    }
    let items: Vec<&RawValue> =
        serde_json::from_slice(&body).map_err(|source| CodecError::Json {
            what: "the body",
            source,
        })?;
    let base = body.as_ptr() as usize;
    Ok(items
        .iter()
        .map(|raw| {
            // Each element borrows from the body (a RawValue is a slice of its input), so
            // its place in the body is its address less the body's.
            let text = raw.get().as_bytes();
            let at = text.as_ptr() as usize - base;
            body.slice(at..at + text.len())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: Vec<Bytes>) -> Vec<String> {
        v.into_iter()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
            .collect()
    }

    #[test]
    fn arrays_split_into_their_elements_as_sent() {
        let body = Bytes::from_static(b" [ {\"a\": 1}, 2 ,\"x\\\"y\", [3, 4] ]\n");
        assert_eq!(
            texts(Split::Array.pieces(body).expect("an array")),
            ["{\"a\": 1}", "2", "\"x\\\"y\"", "[3, 4]"]
        );
        assert!(
            Split::Array
                .pieces(Bytes::from_static(b"[]"))
                .expect("empty")
                .is_empty()
        );
        let one = Bytes::from_static(b"{\"a\": [1]}");
        assert_eq!(
            texts(Split::Array.pieces(one).expect("one")),
            ["{\"a\": [1]}"]
        );
        let broken = Split::Array
            .pieces(Bytes::from_static(b"[1, 2"))
            .expect_err("broken");
        assert_eq!(broken.to_string(), "the body is not JSON");
    }

    #[test]
    fn lines_skip_empty_ones_and_carriage_returns() {
        let body = Bytes::from_static(b"{\"a\":1}\r\n\n{\"a\":2}\n  x\n");
        assert_eq!(
            texts(Split::Lines.pieces(body).expect("lines")),
            ["{\"a\":1}", "{\"a\":2}", "  x"]
        );
        assert_eq!(
            texts(
                Split::Lines
                    .pieces(Bytes::from_static(b"last"))
                    .expect("one")
            ),
            ["last"]
        );
        assert!(Split::Lines.pieces(Bytes::new()).expect("none").is_empty());
        assert_eq!(Split::None.pieces(Bytes::new()).expect("whole").len(), 1);
    }
}

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;
use runnel_core::Record;
use serde_json::{Value, json};

use crate::format::*;

/// Options as a connector's section would give them (written as JSON here).
fn opts(json_text: &str) -> FormatOptions {
    serde_json::from_str(json_text).unwrap()
}

fn csv_opts(columns: &[(&str, &str)]) -> FormatOptions {
    let cols: Vec<Value> = columns
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    opts(&json!({"type": "csv", "csv": {"columns": cols}}).to_string())
}

#[test]
fn a_name_or_a_mapping() {
    assert_eq!(opts("\"json\"").kind, FormatKind::Json);
    let o =
        opts(r#"{"type":"csv","csv":{"delimiter":";","header":false,"columns":[{"name":"a"}]}}"#);
    assert_eq!(
        (o.kind, o.csv.delimiter, o.csv.header),
        (FormatKind::Csv, ';', false)
    );
    let e = serde_json::from_str::<FormatOptions>(r#""xml""#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected bytes, text, json, csv or cloudevents"),
        "{e}"
    );
}

#[test]
fn checks_name_the_field() {
    let o = opts(r#"{"type":"csv"}"#);
    assert!(
        o.check("format", Way::Read).is_ok(),
        "a header row names the columns"
    );
    let e = o.check("file.format", Way::Write).unwrap_err();
    assert_eq!(
        e.to_string(),
        "file.format.csv.columns: writing CSV needs the columns, in order"
    );
    let o = opts(r#"{"type":"cloudevents","cloudevents":{"mode":"binary","source":"/x"}}"#);
    let e = o.check("format", Way::Read).unwrap_err();
    assert_eq!(
        e.to_string(),
        "format.cloudevents.type: events made of plain data (mode: binary) need it"
    );
}

#[test]
fn text_and_json_are_checked_and_kept_as_they_are() {
    let mut d = Decoder::new(&opts("\"text\""));
    let e = d.decode(Bytes::from_static(b"\xff\xfe"), "id").unwrap_err();
    // The parser's own reason is kept as the cause, not flattened into the message.
    assert_eq!(e.to_string(), "the piece is not UTF-8 text");
    assert!(
        runnel_core::chain(&e).starts_with("the piece is not UTF-8 text: invalid utf-8"),
        "{}",
        runnel_core::chain(&e)
    );
    let mut d = Decoder::new(&opts("\"json\""));
    let e = d.decode(Bytes::from_static(b"{nope"), "id").unwrap_err();
    assert!(
        runnel_core::chain(&e).starts_with("the piece is not JSON: key must be a string"),
        "{}",
        runnel_core::chain(&e)
    );
    let got = d.decode(Bytes::from_static(b"{\"a\": 1}"), "id").unwrap();
    assert_eq!(&got[0].value[..], b"{\"a\": 1}");
}

#[test]
fn csv_rows_with_a_header_quoting_and_types() {
    let o = csv_opts(&[
        ("name", "string"),
        ("age", "integer"),
        ("score", "number"),
        ("ok", "boolean"),
    ]);
    let mut d = Decoder::new(&o);
    assert!(
        d.decode(Bytes::from_static(b"name,age,score,ok"), "id")
            .unwrap()
            .is_empty()
    );
    let got = d
        .decode(Bytes::from_static(b"\"Lovelace, Ada\",36,1.5,true"), "id")
        .unwrap();
    let v: Value = serde_json::from_slice(&got[0].value).unwrap();
    assert_eq!(
        v,
        json!({"name": "Lovelace, Ada", "age": 36, "score": 1.5, "ok": true})
    );
    let got = d.decode(Bytes::from_static(b"x,,,"), "id").unwrap();
    let v: Value = serde_json::from_slice(&got[0].value).unwrap();
    assert_eq!(
        v,
        json!({"name": "x", "age": null, "score": null, "ok": null})
    );
    let e = d
        .decode(Bytes::from_static(b"x,old,1,true"), "id")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "CSV column \"age\": \"old\" is not an integer"
    );
    let e = d.decode(Bytes::from_static(b"x,1"), "id").unwrap_err();
    assert_eq!(e.to_string(), "a CSV row has 2 fields, the header 4");
    let enc = Encoder::new(&o);
    assert_eq!(enc.header().unwrap(), b"name,age,score,ok");
}

#[test]
fn cloudevents_structured_to_binary_and_back() {
    let event = json!({
        "specversion": "1.0", "id": "e-1", "source": "/sensors/7", "type": "reading",
        "subject": "t", "time": "2026-12-02T10:00:00Z", "datacontenttype": "application/json",
        "dataschema": "https://example.com/s", "traceparent": "00-ab-cd-01",
        "data": {"c": 21.5}
    });
    let o = opts(r#""cloudevents""#);
    let mut d = Decoder::new(&o);
    let got = d
        .decode(Bytes::from(event.to_string()), "id")
        .unwrap()
        .remove(0);
    assert_eq!(
        serde_json::from_slice::<Value>(&got.value).unwrap(),
        json!({"c": 21.5})
    );
    let h = |n: &str| {
        got.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h("ce-id").unwrap(), "e-1");
    assert_eq!(h("ce-traceparent").unwrap(), "00-ab-cd-01");
    assert_eq!(h("content-type").unwrap(), "application/json");
    let mut r = Record::new(got.value.clone());
    r.headers = got.headers.clone();
    let back: Value =
        serde_json::from_slice(&Encoder::new(&o).encode(&r, "t-0-0").unwrap()).unwrap();
    assert_eq!(back, event, "every attribute comes back");
    for missing in ["id", "source", "type", "specversion"] {
        let mut e = event.clone();
        e.as_object_mut().unwrap().remove(missing);
        let err = d
            .decode(Bytes::from(e.to_string()), "id")
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{missing:?}")), "{err}");
    }
}

#[test]
fn cloudevents_binary_mode_makes_events_of_plain_data() {
    let o = opts(
        r#"{"type":"cloudevents","cloudevents":{"mode":"binary","source":"/files/a","type":"line"}}"#,
    );
    let mut d = Decoder::new(&o);
    let a = d
        .decode(Bytes::from_static(b"hello"), "files-a-1")
        .unwrap()
        .remove(0);
    let b = d
        .decode(Bytes::from_static(b"again"), "files-a-2")
        .unwrap()
        .remove(0);
    let id = |x: &Decoded| {
        x.headers
            .iter()
            .find(|(k, _)| k == "ce-id")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        (id(&a), id(&b)),
        (Bytes::from("files-a-1"), Bytes::from("files-a-2"))
    );
    // Written out structured, with the text as data and no id lost.
    let s = opts(r#"{"type":"cloudevents","cloudevents":{"datacontenttype":"text/plain"}}"#);
    let mut r = Record::new(a.value.clone());
    r.headers = a.headers.clone();
    let v: Value = serde_json::from_slice(&Encoder::new(&s).encode(&r, "t-0-0").unwrap()).unwrap();
    assert_eq!(v["id"], "files-a-1");
    assert_eq!(v["data"], "hello");
    assert_eq!(v["datacontenttype"], "text/plain");
    // Binary data that is not text goes as data_base64.
    let r = Record::new(Bytes::from_static(b"\x00\xff"));
    let v: Value = serde_json::from_slice(
        &Encoder::new(&opts(
            r#"{"type":"cloudevents","cloudevents":{"source":"/s","type":"t"}}"#,
        ))
        .encode(&r, "t-0-9")
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (v["id"].as_str(), v["data_base64"].as_str()),
        (Some("t-0-9"), Some("AP8="))
    );
}

proptest! {
    /// Any object of string fields survives CSV and back, quotes, delimiters, line
    /// breaks and empty strings included.
    #[test]
    fn csv_round_trips(rows in prop::collection::vec(prop::collection::vec("[a-z,\" \\n;]{0,12}", 3), 1..20)) {
        let o = csv_opts(&[("a", "string"), ("b", "string"), ("c", "string")]);
        let enc = Encoder::new(&o);
        let mut d = Decoder::new(&o);
        d.decode(Bytes::from(enc.header().unwrap()), "id").unwrap();
        for row in rows {
            let obj = json!({"a": row[0], "b": row[1], "c": row[2]});
            let line = enc.encode(&Record::new(obj.to_string()), "x").unwrap();
            let got = d.decode(Bytes::from(line), "id").unwrap();
            prop_assert_eq!(got.len(), 1);
            let back: Value = serde_json::from_slice(&got[0].value).unwrap();
            prop_assert_eq!(back, obj);
        }
    }

    /// Any bytes survive bytes; valid UTF-8 survives text; any event survives structured
    /// mode through the hub's binary form.
    #[test]
    fn bytes_text_and_events_round_trip(data in prop::collection::vec(any::<u8>(), 0..256), text in ".{0,64}", id in "[a-z0-9-]{1,16}") {
        let mut d = Decoder::new(&opts("\"bytes\""));
        prop_assert_eq!(&d.decode(Bytes::from(data.clone()), "id").unwrap()[0].value[..], &data[..]);
        let mut d = Decoder::new(&opts("\"text\""));
        prop_assert_eq!(&d.decode(Bytes::from(text.clone()), "id").unwrap()[0].value[..], text.as_bytes());
        let o = opts("\"cloudevents\"");
        let r = Record::new(Bytes::from(data.clone()))
            .with_header("ce-id", id.clone())
            .with_header("ce-source", "/p")
            .with_header("ce-type", "t")
            .with_header("content-type", "application/octet-stream");
        let structured = Encoder::new(&o).encode(&r, "unused").unwrap();
        let back = Decoder::new(&o).decode(Bytes::from(structured), "id").unwrap().remove(0);
        prop_assert_eq!(&back.value[..], &data[..]);
        let got_id = back.headers.iter().find(|(k, _)| k == "ce-id").unwrap().1.clone();
        prop_assert_eq!(got_id, Bytes::from(id));
    }
}

/// Messages reads each message on its own: a CSV header row is read again in every one,
/// rows decoded before a bad one are kept, and bytes pass through untouched.
#[test]
fn messages_read_each_message_on_its_own() {
    let mut m = crate::Messages::new(&opts(r#""csv""#), 1);
    let mut out = Vec::new();
    m.records(Bytes::from_static(b"a,b\n1,2\n"), &mut out)
        .unwrap();
    m.records(Bytes::from_static(b"a,b\n3,4\n"), &mut out)
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(&out[1].value[..], br#"{"a":"3","b":"4"}"#);
    let mut m = crate::Messages::new(&opts(r#""json""#), 1);
    let mut out = Vec::new();
    assert!(m.records(Bytes::from_static(b"{nope"), &mut out).is_err());
    assert!(out.is_empty());
    let mut m = crate::Messages::new(&FormatOptions::default(), 1);
    m.records(Bytes::from_static(b"\xff raw"), &mut out)
        .unwrap();
    assert_eq!(&out[0].value[..], b"\xff raw");
}

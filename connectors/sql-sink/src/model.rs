//! Fluvio's SQL model as records carry it, and each value checked the way Fluvio's sink
//! parses it, so a value that cannot go into its column is refused here, with the column
//! and the reason, before the database sees the batch.

use std::sync::LazyLock;

use serde::Deserialize;

/// One record: an insert or an upsert into one table (externally tagged, as Fluvio's
/// model serializes it).
#[derive(Debug, Deserialize)]
pub enum Operation {
    Insert {
        table: String,
        values: Vec<Value>,
    },
    Upsert {
        table: String,
        values: Vec<Value>,
        uniq_idx: String,
    },
}

#[derive(Debug, Deserialize)]
pub struct Value {
    pub column: String,
    pub raw_value: String,
    #[serde(rename = "type")]
    pub kind: Type,
}

/// The model's types, named as Fluvio's model names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Type {
    Bool,
    Char,
    SmallInt,
    Int,
    BigInt,
    Float,
    DoublePrecision,
    Text,
    Bytes,
    Numeric,
    Timestamp,
    Date,
    Time,
    Uuid,
    Json,
}

/// A value checked for its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Text the database parses itself (numeric, dates and times, JSON), checked here first.
    Typed(String),
    Uuid(uuid::Uuid),
}

/// One operation, checked: where it goes and its values in column order.
#[derive(Debug)]
pub struct Row {
    pub table: String,
    /// The conflict target of an upsert.
    pub upsert: Option<String>,
    pub columns: Vec<(String, Type)>,
    pub values: Vec<Checked>,
}

impl Row {
    /// What decides the statement: the same key, the same SQL.
    pub fn shape(&self) -> String {
        let mut s = format!("{}|{}", self.table, self.upsert.as_deref().unwrap_or(""));
        for (c, t) in &self.columns {
            s.push_str(&format!("|{c}:{t:?}"));
        }
        s
    }
}

impl Row {
    /// `INSERT INTO table (cols) VALUES (marks)`, and for an upsert `ON CONFLICT(uniq_idx)
    /// DO UPDATE SET c=EXCLUDED.c,...` (`excluded` as the database spells it).
    pub fn insert_sql(&self, marks: &[String], excluded: &str) -> String {
        let cols: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table,
            cols.join(","),
            marks.join(",")
        );
        if let Some(u) = &self.upsert {
            let set: Vec<String> = cols.iter().map(|c| format!("{c}={excluded}.{c}")).collect();
            sql.push_str(&format!(
                " ON CONFLICT({u}) DO UPDATE SET {}",
                set.join(",")
            ));
        }
        sql
    }
}

/// Where a batch ends, written in the same transaction as its rows under
/// `delivery: exactly-once`: the next offset of `topic`/`partition` for `consumer`.
#[derive(Debug, Clone)]
pub struct Mark {
    pub consumer: String,
    pub topic: String,
    pub partition: i64,
    pub next: i64,
}

/// Whose mark, for which topic partition.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub consumer: &'a str,
    pub topic: &'a str,
    pub partition: i64,
}

/// The table the marks are kept in, in the target database.
pub const MARKS_TABLE: &str = "CREATE TABLE IF NOT EXISTS runnel_offsets (consumer TEXT NOT NULL, \
     topic TEXT NOT NULL, partition BIGINT NOT NULL, next_offset BIGINT NOT NULL, \
     PRIMARY KEY (consumer, topic, partition))";

use sql_common::plain_name as name;

type Format = Vec<time::format_description::BorrowedFormatItem<'static>>;

fn format(description: &'static str) -> Format {
    time::format_description::parse_borrowed::<2>(description).expect("a valid format description")
}

/// Fluvio's `%Y-%m-%d %H:%M:%S%.f`, and the ISO date and time chrono reads; each with and
/// without a fraction of a second.
static TIMESTAMP: LazyLock<[Format; 2]> = LazyLock::new(|| {
    [
        format("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format("[year]-[month]-[day] [hour]:[minute]:[second]"),
    ]
});
static DATE: LazyLock<Format> = LazyLock::new(|| format("[year]-[month]-[day]"));
static TIME: LazyLock<[Format; 2]> = LazyLock::new(|| {
    [
        format("[hour]:[minute]:[second].[subsecond]"),
        format("[hour]:[minute]:[second]"),
    ]
});

/// Parses a record into a checked row, or says why it cannot be one.
pub fn row(value: &[u8]) -> Result<Row, String> {
    let op: Operation = serde_json::from_slice(value).map_err(|e| {
        format!("the record is not an operation of Fluvio's SQL model ({{\"Insert\":{{...}}}} or {{\"Upsert\":{{...}}}}): {e}")
    })?;
    let (table, values, upsert) = match op {
        Operation::Insert { table, values } => (table, values, None),
        Operation::Upsert {
            table,
            values,
            uniq_idx,
        } => (table, values, Some(uniq_idx)),
    };
    name("table", &table)?;
    if let Some(u) = &upsert {
        for part in u.split(',') {
            name("uniq_idx", part.trim())?;
        }
    }
    if values.is_empty() {
        return Err(format!("the operation on {table} has no values"));
    }
    let mut columns = Vec::with_capacity(values.len());
    let mut checked = Vec::with_capacity(values.len());
    for v in values {
        name("column", &v.column)?;
        if columns.iter().any(|(c, _): &(String, Type)| *c == v.column) {
            return Err(format!("column {} is given twice", v.column));
        }
        let c = check(v.kind, &v.raw_value)
            .map_err(|why| format!("column {} ({:?}): {why}", v.column, v.kind))?;
        columns.push((v.column, v.kind));
        checked.push(c);
    }
    Ok(Row {
        table,
        upsert,
        columns,
        values: checked,
    })
}

/// The value at json-sql's dotted path: `$` or empty is the whole record; `$.a.b`, `.a.b`
/// and `a.b` are the pointer `/a/b`.
fn at<'a>(record: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    if key == "$" || key.is_empty() {
        return Some(record);
    }
    let path = key.strip_prefix("$.").unwrap_or(key);
    let mut pointer = path.replace('.', "/");
    if !pointer.starts_with('/') {
        pointer.insert(0, '/');
    }
    record.pointer(&pointer)
}

fn model_type(t: sql_sink::ValueType) -> Type {
    use sql_sink::ValueType as V;
    match t {
        V::Bigint => Type::BigInt,
        V::Int => Type::Int,
        V::Smallint => Type::SmallInt,
        V::Bool => Type::Bool,
        V::Bytea => Type::Bytes,
        V::Text => Type::Text,
        V::Float => Type::Float,
        V::Doubleprecision => Type::DoublePrecision,
        V::Numeric => Type::Numeric,
        V::Date => Type::Date,
        V::Time => Type::Time,
        V::Timestamp => Type::Timestamp,
        V::Json => Type::Json,
        V::Uuid => Type::Uuid,
    }
}

/// A plain JSON record made a row by json-sql's mapping, as json-sql makes its operation:
/// a string gives its text, anything else its compact JSON; a missing key its default,
/// else `Missing required field: KEY` when required, else an empty value.
pub fn mapped_row(m: &sql_sink::Mapping, value: &[u8]) -> Result<Row, String> {
    let record: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| format!("the record is not JSON: {e}"))?;
    name("table", &m.table)?;
    let upsert = match m.operation {
        sql_sink::MappingOperation::Insert => None,
        sql_sink::MappingOperation::Upsert => {
            for c in &m.unique_columns {
                name("unique-columns", c)?;
            }
            Some(m.unique_columns.join(","))
        }
    };
    let mut columns = Vec::with_capacity(m.columns.len());
    let mut values = Vec::with_capacity(m.columns.len());
    for (column, c) in &m.columns {
        name("column", column)?;
        let raw = match at(&record, &c.json_key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => match (&c.value.default, c.value.required) {
                (Some(d), _) => d.text(),
                (None, true) => return Err(format!("Missing required field: {}", c.json_key)),
                (None, false) => String::new(),
            },
        };
        let kind = model_type(c.value.kind);
        let checked =
            check(kind, &raw).map_err(|why| format!("column {column} ({kind:?}): {why}"))?;
        columns.push((column.clone(), kind));
        values.push(checked);
    }
    Ok(Row {
        table: m.table.clone(),
        upsert,
        columns,
        values,
    })
}

fn parse<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, String> {
    raw.parse::<T>()
        .map_err(|_| format!("{raw:?} is not {what}"))
}

/// Checks `raw` as Fluvio's sink parses a value of type `kind`.
pub fn check(kind: Type, raw: &str) -> Result<Checked, String> {
    Ok(match kind {
        Type::Bool => Checked::Bool(parse(raw, "true or false")?),
        Type::Char => Checked::Int(parse::<i8>(raw, "a number from -128 to 127")?.into()),
        Type::SmallInt => Checked::Int(parse::<i16>(raw, "a 16-bit integer")?.into()),
        Type::Int => Checked::Int(parse::<i32>(raw, "a 32-bit integer")?.into()),
        Type::BigInt => Checked::Int(parse::<i64>(raw, "a 64-bit integer")?),
        Type::Float => Checked::Float(parse::<f32>(raw, "a number")?.into()),
        Type::DoublePrecision => Checked::Float(parse(raw, "a number")?),
        Type::Text => Checked::Text(raw.to_string()),
        Type::Bytes => Checked::Bytes(raw.as_bytes().to_vec()),
        Type::Numeric => {
            let digits = raw.trim_start_matches(['-', '+']);
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let ok = !(int.is_empty() && frac.is_empty())
                && int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit());
            if !ok {
                return Err(format!("{raw:?} is not a decimal number"));
            }
            Checked::Typed(raw.to_string())
        }
        Type::Timestamp => {
            if !TIMESTAMP
                .iter()
                .any(|f| time::PrimitiveDateTime::parse(raw, f).is_ok())
            {
                return Err(format!(
                    "{raw:?} is not a timestamp as YYYY-MM-DD HH:MM:SS[.fraction]"
                ));
            }
            Checked::Typed(raw.to_string())
        }
        Type::Date => {
            time::Date::parse(raw, &*DATE)
                .map_err(|_| format!("{raw:?} is not a date as YYYY-MM-DD"))?;
            Checked::Typed(raw.to_string())
        }
        Type::Time => {
            if !TIME.iter().any(|f| time::Time::parse(raw, f).is_ok()) {
                return Err(format!("{raw:?} is not a time as HH:MM:SS[.fraction]"));
            }
            Checked::Typed(raw.to_string())
        }
        Type::Uuid => {
            Checked::Uuid(uuid::Uuid::parse_str(raw).map_err(|_| format!("{raw:?} is not a UUID"))?)
        }
        Type::Json => {
            serde_json::from_str::<serde::de::IgnoredAny>(raw)
                .map_err(|e| format!("not JSON: {e}"))?;
            Checked::Typed(raw.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record json-sql makes from `{"device":{"device_id":1}}` with Fluvio's example
    /// mapping (its docs' `smdk test` output, values in its own order).
    const JSON_SQL: &str = r#"{"Insert":{"table":"target_table","values":[{"column":"record","raw_value":"{\"device\":{\"device_id\":1}}","type":"Json"},{"column":"device_type","raw_value":"mobile","type":"Text"},{"column":"device_id","raw_value":"1","type":"Int"}]}}"#;

    #[test]
    fn json_sql_records_become_rows() {
        let r = row(JSON_SQL.as_bytes()).unwrap();
        assert_eq!(r.table, "target_table");
        assert!(r.upsert.is_none());
        let cols: Vec<&str> = r.columns.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(cols, ["record", "device_type", "device_id"]);
        assert_eq!(r.values[2], Checked::Int(1));
        assert_eq!(
            r.values[0],
            Checked::Typed(r#"{"device":{"device_id":1}}"#.into())
        );
        let up = row(br#"{"Upsert":{"table":"users","uniq_idx":"name","values":[{"column":"name","type":"Text","raw_value":"John"},{"column":"age","type":"Int","raw_value":"67"}]}}"#).unwrap();
        assert_eq!(up.upsert.as_deref(), Some("name"));
        assert_ne!(up.shape(), r.shape());
    }

    #[test]
    fn every_type_is_checked_as_fluvio_parses_it() {
        let good = [
            (Type::Bool, "true"),
            (Type::Char, "126"),
            (Type::SmallInt, "-12"),
            (Type::Int, "40"),
            (Type::BigInt, "9223372036854775807"),
            (Type::Float, "3.123"),
            (Type::DoublePrecision, "3.333333333"),
            (Type::Text, ""),
            (Type::Bytes, "some bytes"),
            (Type::Numeric, "-10.25"),
            (Type::Timestamp, "2026-12-07 10:11:12.345"),
            (Type::Timestamp, "2026-12-07 10:11:12"),
            (Type::Date, "2026-12-07"),
            (Type::Time, "10:11:12.5"),
            (Type::Uuid, "F0841D15-133A-48A7-B48C-CE1BA72F8C94"),
            (Type::Json, r#"{"json_key":"json_value"}"#),
        ];
        for (t, raw) in good {
            assert!(check(t, raw).is_ok(), "{t:?} {raw:?}");
        }
        let bad = [
            (Type::Bool, "yes", "\"yes\" is not true or false"),
            (Type::Char, "300", "not a number from -128 to 127"),
            (Type::SmallInt, "70000", "not a 16-bit integer"),
            (Type::Int, "", "\"\" is not a 32-bit integer"),
            (Type::BigInt, "1.5", "not a 64-bit integer"),
            (Type::Float, "abc", "not a number"),
            (Type::Numeric, "1e5", "not a decimal number"),
            (Type::Timestamp, "2026-12-07T10:11:12", "not a timestamp"),
            (Type::Date, "07/12/2026", "not a date"),
            (Type::Time, "25:00:00", "not a time"),
            (Type::Uuid, "not-a-uuid", "not a UUID"),
            (Type::Json, "{", "not JSON"),
        ];
        for (t, raw, why) in bad {
            let e = check(t, raw).unwrap_err();
            assert!(e.contains(why), "{t:?} {raw:?}: {e}");
        }
    }

    #[test]
    fn the_mapping_makes_rows_as_json_sql_makes_operations() {
        let m: sql_sink::Mapping = serde_json::from_str(
            r#"{"table":"topic_message","map-columns":{
                "device_id":{"json-key":"device.device_id","value":{"type":"int","default":"0","required":true}},
                "record":{"json-key":"$","value":{"type":"jsonb","required":true}},
                "kind":{"json-key":"$.device.kind","value":{"type":"text","default":"mobile"}},
                "first":{"json-key":"metrics.0","value":{"type":"float"}}}}"#,
        )
        .unwrap();
        let r = mapped_row(&m, br#"{"device":{"device_id":7},"metrics":[1.5]}"#).unwrap();
        let got: Vec<(&str, &Checked)> = r
            .columns
            .iter()
            .map(|(c, _)| c.as_str())
            .zip(&r.values)
            .collect();
        assert_eq!(
            got,
            [
                ("device_id", &Checked::Int(7)),
                ("first", &Checked::Float(1.5)),
                ("kind", &Checked::Text("mobile".into())),
                (
                    "record",
                    &Checked::Typed(r#"{"device":{"device_id":7},"metrics":[1.5]}"#.into())
                ),
            ]
        );
        // A default wins over required; a missing optional key is empty, which only text
        // takes (as in Fluvio, where the sink then fails to parse it).
        assert_eq!(
            mapped_row(&m, br#"{"metrics":[2]}"#).unwrap().values[0],
            Checked::Int(0)
        );
        assert_eq!(
            mapped_row(&m, b"{}").unwrap_err(),
            "column first (Float): \"\" is not a number"
        );
        let strict: sql_sink::Mapping = serde_json::from_str(
            r#"{"table":"t","map-columns":{"a":{"json-key":".wrong_key","value":{"type":"int","required":true}}}}"#,
        )
        .unwrap();
        assert_eq!(
            mapped_row(&strict, b"{}").unwrap_err(),
            "Missing required field: .wrong_key"
        );
        assert!(
            mapped_row(&strict, b"not json")
                .unwrap_err()
                .starts_with("the record is not JSON")
        );
    }

    #[test]
    fn refusals_name_the_column_and_names_stay_plain() {
        let e = row(br#"{"Insert":{"table":"t","values":[{"column":"age","raw_value":"old","type":"Int"}]}}"#).unwrap_err();
        assert_eq!(e, "column age (Int): \"old\" is not a 32-bit integer");
        let e = row(br#"{"Insert":{"table":"t; DROP TABLE x","values":[{"column":"a","raw_value":"1","type":"Int"}]}}"#).unwrap_err();
        assert!(
            e.starts_with("table \"t; DROP TABLE x\" is not a plain SQL name"),
            "{e}"
        );
        let e = row(br#"{"Upsert":{"table":"s.t","uniq_idx":"a) DO NOTHING --","values":[{"column":"a","raw_value":"1","type":"Int"}]}}"#).unwrap_err();
        assert!(e.starts_with("uniq_idx"), "{e}");
        assert!(row(br#"{"Insert":{"table":"t","values":[]}}"#).is_err());
        assert!(
            row(b"plain text")
                .unwrap_err()
                .starts_with("the record is not an operation")
        );
        let e = row(br#"{"Insert":{"table":"t","values":[{"column":"a","raw_value":"1","type":"Int"},{"column":"a","raw_value":"2","type":"Int"}]}}"#).unwrap_err();
        assert_eq!(e, "column a is given twice");
    }
}

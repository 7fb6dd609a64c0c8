//! Value types shared by every connector's config: durations and byte sizes written the way
//! Fluvio's files write them.

use std::{fmt, str::FromStr, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration: a number of milliseconds (`1000`) or a humantime string (`10s`, `1m 30s`,
/// `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(ms) = t.parse::<u64>() {
            return Ok(Self::from_millis(ms));
        }
        humantime::parse_duration(t)
            .map(HumanDuration)
            .map_err(|_| format!("invalid duration {s:?} (write it as 500ms, 10s, 1m or a number of milliseconds)"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 10s, a number of milliseconds, or {secs, nanos}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(HumanDuration::from_millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(HumanDuration::from_millis)
                    .map_err(|_| E::custom(format!("invalid duration {v}: it is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: write whole milliseconds or a unit (1500ms)"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
            /// `{secs: 30, nanos: 0}`, as Fluvio's connectors wrote durations.
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let (mut secs, mut nanos) = (0u64, 0u32);
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "secs" => secs = m.next_value()?,
                        "nanos" => nanos = m.next_value()?,
                        other => return Err(de::Error::unknown_field(other, &["secs", "nanos"])),
                    }
                }
                if nanos >= 1_000_000_000 {
                    return Err(de::Error::custom("nanos must be less than 1000000000"));
                }
                Ok(HumanDuration(Duration::new(secs, nanos)))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: milliseconds as a number, a string such as 500ms, 10s, 1m, or {secs, nanos}.",
            "type": ["string", "integer", "object"]
        })
    }
}

/// A size in bytes: a number or a string with a unit (`16KB`, `1MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        bytesize::ByteSize::from_str(s.trim())
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| format!("invalid size {s:?} (write it as 16384, 16KB or 1MiB)"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 16KB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: it is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: bytes as a number, or a string such as 16KB or 1MiB.",
            "type": ["string", "integer"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_both_ways() {
        let d: HumanDuration = serde_yaml::from_str("1500").unwrap();
        assert_eq!(d.0, Duration::from_millis(1500));
        let d: HumanDuration = serde_yaml::from_str("10s").unwrap();
        assert_eq!(d.0, Duration::from_secs(10));
        let e = serde_yaml::from_str::<HumanDuration>("10 parsecs").unwrap_err();
        assert!(
            e.to_string().contains("invalid duration \"10 parsecs\""),
            "{e}"
        );
    }

    #[test]
    fn durations_read_fluvios_secs_nanos_form() {
        let d: HumanDuration = serde_yaml::from_str("{secs: 30, nanos: 500}").unwrap();
        assert_eq!(d.0, Duration::new(30, 500));
        let e = serde_yaml::from_str::<HumanDuration>("{secs: 1, millis: 2}").unwrap_err();
        assert!(e.to_string().contains("unknown field `millis`"), "{e}");
        assert!(serde_yaml::from_str::<HumanDuration>("{nanos: 1000000000}").is_err());
    }

    #[test]
    fn sizes_parse_both_ways() {
        assert_eq!(serde_yaml::from_str::<ByteSize>("44").unwrap().0, 44);
        assert_eq!(serde_yaml::from_str::<ByteSize>("1MiB").unwrap().0, 1 << 20);
        assert!(serde_yaml::from_str::<ByteSize>("lots").is_err());
    }
}

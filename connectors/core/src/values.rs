//! Value types shared by every connector's config: durations and byte sizes written the way
//! Fluvio's files write them.

use std::{fmt, str::FromStr, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration: a humantime string (`10s`, `1m 30s`, `250ms`), Fluvio's `{secs, nanos}`, or a
/// bare number counted in the field's unit: `UNIT_MS` milliseconds, so milliseconds by
/// default and seconds for [`Seconds`] (the unit the field had in Fluvio's connector:
/// http's `interval: 10` and mqtt's `timeout: 60` were seconds, the test connector's
/// `timeout: 1000` milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration<const UNIT_MS: u64 = 1>(pub Duration);

/// A duration whose bare numbers are seconds.
pub type Seconds = HumanDuration<1000>;

impl<const UNIT_MS: u64> HumanDuration<UNIT_MS> {
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    /// A bare number in this field's unit.
    fn from_units(n: u64) -> Self {
        HumanDuration(Duration::from_millis(n.saturating_mul(UNIT_MS)))
    }

    fn unit_name() -> &'static str {
        if UNIT_MS == 1000 {
            "seconds"
        } else {
            "milliseconds"
        }
    }
}

impl<const UNIT_MS: u64> From<HumanDuration<UNIT_MS>> for Duration {
    fn from(d: HumanDuration<UNIT_MS>) -> Self {
        d.0
    }
}

impl<const UNIT_MS: u64> FromStr for HumanDuration<UNIT_MS> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Self::from_units(n));
        }
        humantime::parse_duration(t)
            .map(HumanDuration)
            .map_err(|_| {
                format!(
                    "invalid duration {s:?} (write it as 500ms, 10s, 1m or a number of {})",
                    Self::unit_name()
                )
            })
    }
}

impl<const UNIT_MS: u64> fmt::Display for HumanDuration<UNIT_MS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de, const UNIT_MS: u64> Deserialize<'de> for HumanDuration<UNIT_MS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const U: u64>;
        impl<'de, const U: u64> de::Visitor<'de> for V<U> {
            type Value = HumanDuration<U>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a duration such as 10s, a number of {}, or {{secs, nanos}}",
                    HumanDuration::<U>::unit_name()
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(HumanDuration::from_units(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(HumanDuration::from_units)
                    .map_err(|_| E::custom(format!("invalid duration {v}: it is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: write whole {} or a unit (1500ms)",
                    HumanDuration::<U>::unit_name()
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
        d.deserialize_any(V::<UNIT_MS>)
    }
}

impl<const UNIT_MS: u64> Serialize for HumanDuration<UNIT_MS> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<const UNIT_MS: u64> JsonSchema for HumanDuration<UNIT_MS> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        if UNIT_MS == 1 {
            "Duration".into()
        } else {
            format!("Duration{}", Self::unit_name()).into()
        }
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": format!(
                "A duration: a string such as 500ms, 10s, 1m, {{secs, nanos}}, or a number of {}.",
                Self::unit_name()
            ),
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
    fn bare_numbers_take_the_fields_unit() {
        let d: Seconds = serde_yaml::from_str("10").unwrap();
        assert_eq!(d.0, Duration::from_secs(10));
        assert_eq!(
            "300".parse::<Seconds>().unwrap().0,
            Duration::from_secs(300)
        );
        let d: Seconds = serde_yaml::from_str("250ms").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        assert_eq!(d.to_string(), "250ms");
        let e = serde_yaml::from_str::<Seconds>("soon").unwrap_err();
        assert!(e.to_string().contains("a number of seconds"), "{e}");
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

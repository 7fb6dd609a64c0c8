//! What kafka-source and kafka-sink share: the cluster's address, Fluvio's `security`
//! section (TLS with key, certificate and CA as files or PEM text) and raw librdkafka
//! `options`, checked here and turned into the librdkafka properties that the runtime's
//! Kafka client code (the same code the Kafka hub runs on) puts on every client.

use std::collections::BTreeMap;

use runnel_config::{FieldError, secrets::Secret};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The brokers of `url`: Fluvio's comma-separated `host:port` list, or the same after
/// `kafka://`. Each entry must have a host and a port.
pub fn brokers(url: &str) -> Result<String, FieldError> {
    let list = url.trim();
    let list = list.strip_prefix("kafka://").unwrap_or(list);
    if list.contains("://") {
        return Err(FieldError::new(
            "url",
            "expected host:port[,host:port...] or kafka://host:port (no other scheme)",
        ));
    }
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(FieldError::new(
                "url",
                format!(
                    "{entry:?} has no port: write host:port (Kafka listens on 9092 by default)"
                ),
            ));
        };
        if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
            return Err(FieldError::new(
                "url",
                format!("{entry:?} is not host:port"),
            ));
        }
        out.push(entry);
    }
    Ok(out.join(","))
}

/// How the connection is secured (Fluvio's `security` section of kafka-sink, which
/// kafka-source takes too).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// `ssl` (TLS), `plaintext`, `sasl_ssl` or `sasl_plaintext` (SASL settings in
    /// `options`). Default ssl when any file is given, else plaintext.
    pub security_protocol: Option<SecurityProtocol>,
    /// The client's private key, for brokers that want a client certificate.
    pub ssl_key: Option<SecurityFile>,
    /// The password of an encrypted ssl_key; write it as ${{ secrets.NAME }}.
    pub ssl_key_password: Option<Secret>,
    /// The client's certificate, with ssl_key.
    pub ssl_cert: Option<SecurityFile>,
    /// The CA certificates the brokers' certificates are checked against. Default: the
    /// system's.
    pub ssl_ca: Option<SecurityFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[serde(alias = "SSL")]
    Ssl,
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    /// SASL over TLS; the mechanism and credentials go in `options` (sasl.*).
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
    /// SASL without TLS.
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
}

/// A key or certificate: `{file: PATH}` or `{pem: TEXT}` (one of them).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    /// The path of a PEM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The PEM text itself; write it as ${{ secrets.NAME }}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<Secret>,
}

/// librdkafka properties Runnel sets itself, with the field that says them instead.
const OWN: &[(&str, &str)] = &[
    ("bootstrap.servers", "url"),
    ("metadata.broker.list", "url"),
    ("group.id", "group"),
    (
        "enable.auto.commit",
        "nothing: offsets are committed after the hub stored",
    ),
    (
        "enable.auto.offset.store",
        "nothing: offsets are committed after the hub stored",
    ),
    ("security.protocol", "security.security_protocol"),
    ("ssl.key.location", "security.ssl_key"),
    ("ssl.key.pem", "security.ssl_key"),
    ("ssl.certificate.location", "security.ssl_cert"),
    ("ssl.certificate.pem", "security.ssl_cert"),
    ("ssl.ca.location", "security.ssl_ca"),
    ("ssl.ca.pem", "security.ssl_ca"),
];

/// The librdkafka properties of `security` and `options`, checked: an option Runnel
/// sets from a field of its own is refused with that field's name, and so is one that
/// would break at-least-once delivery (`acks` other than all, idempotence off).
pub fn client_settings(
    security: Option<&Security>,
    options: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, FieldError> {
    let mut out = Vec::new();
    if let Some(s) = security {
        let any_file = s.ssl_key.is_some() || s.ssl_cert.is_some() || s.ssl_ca.is_some();
        let protocol = s.security_protocol.unwrap_or(if any_file {
            SecurityProtocol::Ssl
        } else {
            SecurityProtocol::Plaintext
        });
        let tls = matches!(protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl);
        if !tls && any_file {
            return Err(FieldError::new(
                "security.security_protocol",
                "has no TLS, but TLS files are given: set ssl (or sasl_ssl), or leave the files out",
            ));
        }
        if s.ssl_key.is_some() != s.ssl_cert.is_some() {
            return Err(FieldError::new(
                if s.ssl_key.is_some() {
                    "security.ssl_cert"
                } else {
                    "security.ssl_key"
                },
                "missing: a client certificate needs both ssl_key and ssl_cert",
            ));
        }
        if s.ssl_key_password.is_some() && s.ssl_key.is_none() {
            return Err(FieldError::new(
                "security.ssl_key_password",
                "is given without ssl_key",
            ));
        }
        out.push((
            "security.protocol".into(),
            match protocol {
                SecurityProtocol::Ssl => "ssl",
                SecurityProtocol::Plaintext => "plaintext",
                SecurityProtocol::SaslSsl => "sasl_ssl",
                SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            }
            .into(),
        ));
        for (field, file, location, pem) in [
            ("ssl_key", &s.ssl_key, "ssl.key.location", "ssl.key.pem"),
            (
                "ssl_cert",
                &s.ssl_cert,
                "ssl.certificate.location",
                "ssl.certificate.pem",
            ),
            ("ssl_ca", &s.ssl_ca, "ssl.ca.location", "ssl.ca.pem"),
        ] {
            let Some(f) = file else { continue };
            match (&f.file, &f.pem) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(FieldError::new(
                        format!("security.{field}"),
                        "give one of file: PATH and pem: TEXT",
                    ));
                }
                (Some(path), None) if path.trim().is_empty() => {
                    return Err(FieldError::new(
                        format!("security.{field}.file"),
                        "is empty",
                    ));
                }
                (Some(path), None) => out.push((location.into(), path.clone())),
                (None, Some(text)) if !text.expose().contains("-----BEGIN") => {
                    return Err(FieldError::new(
                        format!("security.{field}.pem"),
                        "is not PEM text (no -----BEGIN line)",
                    ));
                }
                (None, Some(text)) => out.push((pem.into(), text.expose().into())),
            }
        }
        if let Some(p) = &s.ssl_key_password {
            out.push(("ssl.key.password".into(), p.expose().into()));
        }
    }
    for (k, v) in options {
        let key = k.trim();
        if let Some((_, instead)) = OWN.iter().find(|(own, _)| *own == key) {
            return Err(FieldError::new(
                format!("options.{key}"),
                format!("is set by Runnel: use {instead}"),
            ));
        }
        let bad = match key {
            "acks" | "request.required.acks" => !matches!(v.trim(), "all" | "-1"),
            "enable.idempotence" => v.trim() != "true",
            _ => false,
        };
        if bad {
            return Err(FieldError::new(
                format!("options.{key}"),
                format!(
                    "{v:?} would lose records a broker failure catches in flight: Runnel writes \
                     with acks=all and idempotence (leave it out)"
                ),
            ));
        }
        if key.is_empty() {
            return Err(FieldError::new("options", "an option has an empty name"));
        }
        out.push((key.to_string(), v.clone()));
    }
    Ok(out)
}

/// The section's `options` as --check shows them: values of options that usually hold a
/// credential (`sasl.password`, anything with `secret`, `password` or `key` in its name)
/// as `******`. For `#[serde(serialize_with)]`.
pub fn masked_options<S: serde::Serializer>(
    options: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(options.len()))?;
    for (k, v) in options {
        let n = k.to_ascii_lowercase();
        if ["password", "secret", "key", "token", "jaas"]
            .iter()
            .any(|w| n.contains(w))
        {
            map.serialize_entry(k, "******")?;
        } else {
            map.serialize_entry(k, v)?;
        }
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists() {
        assert_eq!(brokers("localhost:9092").unwrap(), "localhost:9092");
        assert_eq!(brokers("kafka://a:1, b:2").unwrap(), "a:1,b:2");
        assert!(
            brokers("localhost")
                .unwrap_err()
                .message
                .contains("no port")
        );
        assert!(brokers("http://a:1").is_err());
    }

    #[test]
    fn security_becomes_librdkafka_properties() {
        let s: Security = serde_yaml_like(
            r#"{"ssl_key": {"file": "/k"}, "ssl_cert": {"pem": "-----BEGIN CERTIFICATE-----"}, "ssl_ca": {"file": "/ca"}, "security_protocol": "ssl"}"#,
        );
        let got = client_settings(Some(&s), &BTreeMap::new()).unwrap();
        assert!(got.contains(&("security.protocol".into(), "ssl".into())));
        assert!(got.contains(&("ssl.key.location".into(), "/k".into())));
        assert!(got.contains(&("ssl.ca.location".into(), "/ca".into())));
        assert!(got.iter().any(|(k, _)| k == "ssl.certificate.pem"));
        let opts = BTreeMap::from([("acks".to_string(), "1".to_string())]);
        assert_eq!(
            client_settings(None, &opts).unwrap_err().path,
            "options.acks"
        );
        let opts = BTreeMap::from([("group.id".to_string(), "g".to_string())]);
        let e = client_settings(None, &opts).unwrap_err();
        assert!(e.message.contains("use group"), "{e:?}");
    }

    fn serde_yaml_like(json: &str) -> Security {
        serde_json::from_str(json).unwrap()
    }
}

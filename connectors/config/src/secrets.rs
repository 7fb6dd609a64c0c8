//! Secrets: where their values come from, `${{ secrets.NAME }}` templating, and masking.

use std::{collections::BTreeMap, path::Path};

use serde_yaml::Value;

use super::FieldError;

/// What is shown in place of a secret's value, anywhere a config is printed.
pub use runnel_core::mask::MASK;

/// Where secret values come from: a `--secrets` file (KEY=VALUE lines) first, then the
/// process environment.
#[derive(Default, Clone)]
pub struct SecretStore {
    file: BTreeMap<String, String>,
    use_env: bool,
    /// Any other name resolves to this stand-in (checking a config whose secrets live
    /// elsewhere, as the operator does with Kubernetes Secrets).
    stand_in: Option<String>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("names", &self.file.keys().collect::<Vec<_>>())
            .field("use_env", &self.use_env)
            .finish()
    }
}

impl SecretStore {
    /// A store that reads the process environment only.
    pub fn from_env() -> Self {
        SecretStore {
            file: BTreeMap::new(),
            use_env: true,
            stand_in: None,
        }
    }

    /// A store with exactly these values and no environment; for tests and embedding.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        SecretStore {
            file: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            use_env: false,
            stand_in: None,
        }
    }

    /// Reads a secrets file of `KEY=VALUE` lines (blank lines and `#` comments allowed) on top
    /// of the environment. Errors name the file and the line, never a value.
    pub fn load_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read secrets file: {e}", path.display()))?;
        let mut file = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!(
                    "{}: line {}: expected KEY=VALUE",
                    path.display(),
                    n + 1
                ));
            };
            let k = k.trim();
            if !valid_name(k) {
                return Err(format!(
                    "{}: line {}: invalid secret name {k:?} (letters, digits and _ only)",
                    path.display(),
                    n + 1
                ));
            }
            file.insert(k.to_string(), v.trim().to_string());
        }
        Ok(SecretStore {
            file,
            use_env: true,
            stand_in: None,
        })
    }

    /// A store that answers every name with `value`: for checking a config whose secret
    /// values are not here (the operator's; they come from Kubernetes Secrets in the pod).
    pub fn stand_ins(value: impl Into<String>) -> Self {
        SecretStore {
            stand_in: Some(value.into()),
            ..Self::default()
        }
    }

    /// This store without the environment: only what the file (or pairs) gave. For tools
    /// that must not pick up values from the shell they run in.
    pub fn without_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// This store with `pairs` added; they win over what it had.
    pub fn with_overlay(mut self, pairs: Vec<(String, String)>) -> Self {
        self.file.extend(pairs);
        self
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.file
            .get(name)
            .cloned()
            .or_else(|| self.use_env.then(|| std::env::var(name).ok()).flatten())
            .or_else(|| self.stand_in.clone())
    }
}

/// A secret name: letters, digits and `_`, not starting with a digit.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Replaces every `${{ secrets.NAME }}` in the string values of `value`. With `mask`, secrets
/// are replaced by [`MASK`] instead of their values (for printing). Returns the values used.
pub(crate) fn render(
    value: &mut Value,
    path: &mut Vec<String>,
    store: &SecretStore,
    mask: bool,
    used: &mut Vec<String>,
) -> Result<(), FieldError> {
    match value {
        Value::String(s) if s.contains("${{") => {
            *s = render_str(s, store, mask, used).map_err(|m| FieldError::new(join(path), m))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                render(item, path, store, mask, used)?;
                path.pop();
            }
        }
        Value::Mapping(map) if fluvio_secret_ref(map).is_some() => {
            let name = fluvio_secret_ref(map).unwrap_or_default().to_string();
            let fail = |m: String| FieldError::new(join(path), m);
            if !valid_name(&name) {
                return Err(fail(format!(
                    "invalid secret name {name:?} (letters, digits and _ only)"
                )));
            }
            let v = store.get(&name).ok_or_else(|| {
                fail(format!(
                    "secret {name:?} is not set (set the environment variable {name} or pass --secrets FILE)"
                ))
            })?;
            *value = Value::String(if mask { MASK.to_string() } else { v.clone() });
            used.push(v);
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(key_name(k));
                render(v, path, store, mask, used)?;
                path.pop();
            }
        }
        Value::Tagged(t) => render(&mut t.value, path, store, mask, used)?,
        _ => {}
    }
    Ok(())
}

/// Fluvio's way of naming a secret in place of a value (its `SecretString`): a mapping
/// `{secret: {name: NAME}}` and nothing else. Returns the name.
fn fluvio_secret_ref(map: &serde_yaml::Mapping) -> Option<&str> {
    if map.len() != 1 {
        return None;
    }
    let Some(Value::Mapping(inner)) = map.get("secret") else {
        return None;
    };
    if inner.len() != 1 {
        return None;
    }
    inner.get("name")?.as_str()
}

fn render_str(
    s: &str,
    store: &SecretStore,
    mask: bool,
    used: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed \"${{\": write ${{ secrets.NAME }}".into());
        };
        let expr = after[..end].trim();
        let Some(name) = expr.strip_prefix("secrets.") else {
            return Err(format!(
                "unknown template \"${{{{ {expr} }}}}\": only ${{{{ secrets.NAME }}}} is supported"
            ));
        };
        let name = name.trim();
        if !valid_name(name) {
            return Err(format!(
                "invalid secret name {name:?} (letters, digits and _ only)"
            ));
        }
        let value = store.get(name).ok_or_else(|| {
            format!(
                "secret {name:?} is not set (set the environment variable {name} or pass --secrets FILE)"
            )
        })?;
        if mask {
            out.push_str(MASK);
        } else {
            out.push_str(&value);
        }
        used.push(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn key_name(k: &Value) -> String {
    super::plain_text(k)
}

fn join(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if !out.is_empty() && !p.starts_with('[') {
            out.push('.');
        }
        out.push_str(p);
    }
    out
}

/// A value that is never printed: `Debug`, `Serialize` (`--check`) and errors show `******`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it (a login, a connection string).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Secret)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret; write it as ${{ secrets.NAME }}. Never printed.",
            "type": "string"
        })
    }
}

/// [`masked_url`] for an optional URL field.
pub fn masked_url_option<S: serde::Serializer>(
    value: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(u) => masked_url(u, s),
        None => s.serialize_none(),
    }
}

/// Serializes a URL field with its password (if any) shown as `******`, for `--check`.
/// For `#[serde(serialize_with)]`.
pub fn masked_url<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    match url::Url::parse(value.trim()) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(MASK));
            s.serialize_str(u.as_str())
        }
        _ => s.serialize_str(value),
    }
}

/// Whether a header of this name usually carries a credential.
fn credential_header(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    [
        "auth",
        "cookie",
        "token",
        "secret",
        "key",
        "pass",
        "session",
        "signature",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Serializes a list of "Name: value" header lines with the value of every header that
/// usually carries a credential (Authorization, Cookie, X-Api-Key, ...-Token) shown as
/// `******`, for `--check`: a credential written in the file as it is stays out of the
/// output too. For `#[serde(serialize_with)]`.
pub fn masked_headers<S: serde::Serializer>(lines: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(lines.len()))?;
    for line in lines {
        match line.split_once(':') {
            Some((name, _)) if credential_header(name) => {
                seq.serialize_element(&format!("{name}: {MASK}"))?;
            }
            _ => seq.serialize_element(line)?,
        }
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_masked() {
        let lines = vec![
            "x-secret-token: abc123".to_string(),
            "Authorization: Bearer t".to_string(),
            "Accept: text/plain".to_string(),
        ];
        let mut out = Vec::new();
        masked_headers(&lines, &mut serde_json::Serializer::new(&mut out)).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            !out.contains("abc123") && !out.contains("Bearer t"),
            "{out}"
        );
        assert!(out.contains("Accept: text/plain"), "{out}");
    }

    #[test]
    fn renders_and_masks() {
        let store = SecretStore::from_pairs([("TOKEN", "s3cr3t")]);
        let mut used = vec![];
        let out = render_str("Bearer ${{ secrets.TOKEN }}!", &store, false, &mut used).unwrap();
        assert_eq!(out, "Bearer s3cr3t!");
        let out = render_str("Bearer ${{secrets.TOKEN}}", &store, true, &mut used).unwrap();
        assert_eq!(out, "Bearer ******");
        let e = render_str("${{ secrets.NOPE }}", &store, false, &mut used).unwrap_err();
        assert!(e.contains("\"NOPE\" is not set"), "{e}");
    }

    #[test]
    fn fluvio_secret_references_resolve() {
        let store = SecretStore::from_pairs([("BROKER_URL", "b:9092")]);
        let mut doc: Value = serde_yaml::from_str(
            "kafka:\n  url:\n    secret:\n      name: BROKER_URL\n  hmac: {secret: x, header: h}\n",
        )
        .unwrap();
        let mut used = vec![];
        render(&mut doc.clone(), &mut vec![], &store, true, &mut used).unwrap();
        render(&mut doc, &mut vec![], &store, false, &mut used).unwrap();
        assert_eq!(doc["kafka"]["url"].as_str(), Some("b:9092"));
        // A mapping with more than the reference is a value of its own.
        assert_eq!(doc["kafka"]["hmac"]["secret"].as_str(), Some("x"));
        let mut missing: Value = serde_yaml::from_str("url: {secret: {name: NOPE}}").unwrap();
        let e = render(&mut missing, &mut vec![], &store, false, &mut used).unwrap_err();
        assert_eq!(e.path, "url");
        assert!(e.message.contains("\"NOPE\" is not set"), "{e:?}");
    }
}

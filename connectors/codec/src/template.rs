//! eKuiper's `{{.field}}` templates (a Go template's field access, `{{.a.b}}` reaching into
//! objects), taken from a config and filled from each JSON record. Other template actions
//! are refused when the config is read.

use runnel_core::FieldError;
use serde_json::Value;

/// A piece of a template: text, or a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Field(Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

impl Template {
    /// Parses `s`, the value of config field `field` (named in the error).
    pub fn parse(field: &str, s: &str) -> Result<Template, FieldError> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                out.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(FieldError::new(
                    field,
                    format!("{s:?}: a {{{{ without }}}}"),
                ));
            };
            let path = after[..end].trim().strip_prefix('.').filter(|p| {
                !p.is_empty()
                    && p.split('.').all(|part| {
                        !part.is_empty()
                            && part
                                .chars()
                                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                    })
            });
            match path {
                Some(p) => out.push(Piece::Field(p.split('.').map(str::to_string).collect())),
                None => {
                    return Err(FieldError::new(
                        field,
                        format!(
                            "{s:?}: only {{{{.field}}}} (or {{{{.a.b}}}}) is taken in a template"
                        ),
                    ));
                }
            }
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            out.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(out))
    }

    /// The top-level fields the template reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Piece::Field(path) => path.first().map(String::as_str),
            Piece::Text(_) => None,
        })
    }

    /// The template filled from `record`; `None` when a field it names is missing or null.
    /// A string fills in as it is, any other value as its JSON.
    pub fn render(&self, record: &Value) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(path) => match at(record, path)? {
                    Value::Null => return None,
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Some(out)
    }
}

/// The value at `path` in `v` (object keys, or array indexes as numbers).
pub fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A dotted path (`a.b.0`) as its parts.
pub fn path(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("t", "dev-{{.device.id}}").unwrap();
        assert_eq!(
            t.0,
            vec![
                Piece::Text("dev-".into()),
                Piece::Field(vec!["device".into(), "id".into()])
            ]
        );
        let r = serde_json::json!({"device": {"id": 7}, "n": null});
        assert_eq!(t.render(&r).as_deref(), Some("dev-7"));
        assert_eq!(Template::parse("t", "{{.n}}").unwrap().render(&r), None);
        assert_eq!(Template::parse("t", "{{.gone}}").unwrap().render(&r), None);
        assert_eq!(
            Template::parse("t", "plain").unwrap().0,
            vec![Piece::Text("plain".into())]
        );
        let e = Template::parse("t", "{{if .x}}y{{end}}").unwrap_err();
        assert!(e.to_string().contains("only {{.field}}"), "{e}");
        assert!(Template::parse("t", "{{.x").is_err());
    }
}

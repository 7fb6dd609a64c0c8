//! Flags for a connector's own options, generated from its config's JSON Schema, so every
//! field of the section is also a flag (`endpoint` → `--endpoint`) with the field's doc comment
//! as its help, and the config type stays the one source of truth.

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value};

/// How one section field is read from the command line.
#[derive(Debug, Clone)]
pub struct FieldFlag {
    /// The field's name in the section (`user_agent`).
    pub field: String,
    /// The clap id (the long flag name).
    pub id: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Taken as written.
    Text,
    /// `--flag` alone means true.
    Bool,
    /// Parsed as a YAML scalar, so `--count=5` is a number and `--interval=10s` a string.
    Scalar,
    /// Repeatable; each occurrence is one item.
    List { items_text: bool },
}

/// Adds one flag per property of `schema` to `cmd`. A field whose flag name is `reserved`
/// (taken by the common flags) gets the section as a prefix (`--mqtt-topic`). `aliases` maps
/// old flag names onto fields.
pub fn add_section_flags(
    mut cmd: Command,
    schema: &schemars::Schema,
    section: &str,
    reserved: &[&str],
    aliases: &[(&str, &str)],
) -> (Command, Vec<FieldFlag>) {
    let mut out = Vec::new();
    let root = schema.as_value();
    let Some(props) = root.get("properties").and_then(Json::as_object) else {
        return (cmd, out);
    };
    for (field, declared) in props {
        let prop = resolve_ref(root, declared);
        let kebab = field.replace('_', "-");
        let id = if reserved.contains(&kebab.as_str()) {
            format!("{section}-{kebab}")
        } else {
            kebab.clone()
        };
        let kind = kind_of(root, prop);
        // The field's own doc comment first, the type's when the field has none.
        let help = declared
            .get("description")
            .or_else(|| prop.get("description"))
            .and_then(Json::as_str)
            .map(|d| {
                d.split("\n\n")
                    .next()
                    .unwrap_or_default()
                    .replace('\n', " ")
            })
            .unwrap_or_default();
        let mut arg = Arg::new(id.clone())
            .long(id.clone())
            .help(help)
            .help_heading("Connector options (override connect.yml)");
        if kebab != *field && !reserved.contains(&field.as_str()) {
            arg = arg.alias(field.clone());
        }
        for (old, target) in aliases {
            if target == field {
                arg = arg.alias((*old).to_string());
            }
        }
        arg = match kind {
            Kind::Bool => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_name("BOOL")
                .value_parser(clap::value_parser!(bool)),
            Kind::List { .. } => arg.action(ArgAction::Append).value_name("VALUE"),
            _ => arg.value_name("VALUE"),
        };
        cmd = cmd.arg(arg);
        out.push(FieldFlag {
            field: field.clone(),
            id,
            kind,
        });
    }
    (cmd, out)
}

/// The section fields given on the command line, as YAML ready to merge into the section.
pub fn section_overrides(matches: &ArgMatches, flags: &[FieldFlag]) -> Mapping {
    let mut m = Mapping::new();
    for f in flags {
        let value = match f.kind {
            Kind::Bool => matches.get_one::<bool>(&f.id).map(|b| Value::Bool(*b)),
            Kind::List { items_text } => matches.get_many::<String>(&f.id).map(|vals| {
                Value::Sequence(
                    vals.map(|v| {
                        if items_text {
                            Value::String(v.clone())
                        } else {
                            scalar(v)
                        }
                    })
                    .collect(),
                )
            }),
            Kind::Text => matches
                .get_one::<String>(&f.id)
                .map(|v| Value::String(v.clone())),
            Kind::Scalar => matches.get_one::<String>(&f.id).map(|v| scalar(v)),
        };
        if let Some(v) = value {
            m.insert(Value::String(f.field.clone()), v);
        }
    }
    m
}

fn scalar(v: &str) -> Value {
    match serde_yaml::from_str::<Value>(v) {
        Ok(Value::Null) | Err(_) => Value::String(v.to_string()),
        Ok(parsed) => parsed,
    }
}

fn resolve_ref<'a>(root: &'a Json, prop: &'a Json) -> &'a Json {
    let Some(r) = prop.get("$ref").and_then(Json::as_str) else {
        return prop;
    };
    let Some(name) = r.strip_prefix("#/$defs/") else {
        return prop;
    };
    root.get("$defs").and_then(|d| d.get(name)).unwrap_or(prop)
}

fn types(root: &Json, prop: &Json) -> Vec<String> {
    let prop = resolve_ref(root, prop);
    let mut out: Vec<String> = match prop.get("type") {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    for key in ["anyOf", "oneOf"] {
        if let Some(Json::Array(alts)) = prop.get(key) {
            for alt in alts {
                out.extend(types(root, alt));
            }
        }
    }
    if prop.get("enum").is_some() && out.is_empty() {
        out.push("string".into());
    }
    out.retain(|t| t != "null");
    out.sort();
    out.dedup();
    out
}

fn kind_of(root: &Json, prop: &Json) -> Kind {
    let t = types(root, prop);
    match t.as_slice() {
        [one] if one == "boolean" => Kind::Bool,
        [one] if one == "string" => Kind::Text,
        [one] if one == "array" => {
            let items = resolve_ref(root, prop)
                .get("items")
                .map(|i| types(root, i))
                .unwrap_or_default();
            Kind::List {
                items_text: items == ["string"],
            }
        }
        _ => Kind::Scalar,
    }
}

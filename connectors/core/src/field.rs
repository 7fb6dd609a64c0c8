//! A config error at one field.

use std::fmt;

/// A config error at one field. `path` is dotted (`http.headers[1]`); empty for the whole
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error seen from one level up (`endpoint` → `http.endpoint`).
    pub fn under(mut self, parent: &str) -> Self {
        self.path = join_path(parent, &self.path);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// `parent.child`, or `parent[0]` for an index; either side may be empty.
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => parent.to_string(),
        _ if child.starts_with('[') => format!("{parent}{child}"),
        _ => format!("{parent}.{child}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_fields_and_indexes() {
        assert_eq!(join_path("http", "headers[1]"), "http.headers[1]");
        assert_eq!(join_path("http.headers", "[1]"), "http.headers[1]");
        assert_eq!(join_path("", "topic"), "topic");
        let e = FieldError::new("endpoint", "missing field").under("http");
        assert_eq!(e.to_string(), "http.endpoint: missing field");
    }
}

//! Secret values never reach a log line, a status, an event or an error: text that may hold
//! one passes through [`masked`] first.

/// What a secret value is replaced by.
pub const MASK: &str = "******";

/// `text` with every occurrence of each of `values` replaced by [`MASK`], longest first (so
/// a secret that contains another is masked whole).
pub fn masked(text: &str, values: &[String]) -> String {
    let mut values: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for v in values {
        out = out.replace(v.as_str(), MASK);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn longest_first() {
        let v = vec!["abc".to_string(), "abcdef".to_string(), String::new()];
        assert_eq!(super::masked("x abcdef abc", &v), "x ****** ******");
    }
}

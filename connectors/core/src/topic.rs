//! Topic names, with Kafka's rules (the strictest of the hubs).

/// A topic name no hub accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name {0:?}: use letters, digits, '.', '_' and '-', at most 249 characters")]
pub struct InvalidTopicName(pub String);

/// Letters, digits, `.`, `_` and `-`, 1 to 249 of them, and not `.` or `..`.
pub fn validate(name: &str) -> Result<(), InvalidTopicName> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(InvalidTopicName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kafka_rules() {
        assert!(super::validate("a.b_c-1").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(super::validate(bad).is_err(), "{bad}");
        }
    }
}

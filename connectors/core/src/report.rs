//! An error and its causes on one line, the way a log line or a dead letter's reason wants
//! it: `what failed: why: the root cause`.
//!
//! Library errors here keep their cause as [`std::error::Error::source`] and leave it out of
//! their own message, so nothing is said twice; [`Chain`] puts the chain back together where
//! an error is shown.

use std::{error::Error, fmt};

/// Shows an error followed by each of its sources, joined by `": "`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// The error and its causes as one string.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the file")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_every_cause() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&e), "reading the file: disk on fire");
    }
}

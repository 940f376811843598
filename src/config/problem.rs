//! What is wrong with a configuration: every [`Problem`] names where the bad value came from,
//! the value, and what would work; a [`ConfigError`] carries all of one object's problems, so a
//! user fixes them in one round.

use std::fmt;

use crate::names;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `kafka-expose.io/<key>` annotation; the key without the prefix.
    Annotation(String),
    /// A field of a policy, by its path (`spec.exposure.advertisedHost`).
    Field(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Annotation(key) => write!(f, "{}{key}", names::PREFIX),
            Self::Field(path) => f.write_str(path),
        }
    }
}

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: Source,
    pub value: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl Problem {
    /// A problem with the annotation `key` (without the prefix).
    pub fn annotation(key: &str, value: &str, message: impl Into<String>) -> Self {
        Self {
            source: Source::Annotation(key.to_string()),
            value: value.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.source, self.value, self.message)
    }
}

/// All the problems of one object's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid kafka-expose configuration: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// One problem with the annotation `key`.
    pub fn one(key: &str, value: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem::annotation(key, value, message)],
        }
    }

    /// `Ok` when there are no problems.
    pub fn check(problems: Vec<Problem>) -> Result<(), Self> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Self { problems })
        }
    }
}

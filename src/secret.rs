//! Secrets that never print.

use std::fmt;

/// A secret string whose `Debug` and `Display` show only that it is set.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn constant_time_eq(&self, other: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        if mine.len() != other.len() {
            return false;
        }
        mine.iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("EAAG-token");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert!(secret.constant_time_eq(b"EAAG-token"));
        assert!(!secret.constant_time_eq(b"EAAG-tokem"));
        assert!(!secret.constant_time_eq(b"short"));
    }
}

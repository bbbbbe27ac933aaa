//! `EntityName`: a trimmed, non-empty name of at most 255 characters, as AmoCRM
//! and the mirror's `VARCHAR(255)` columns accept it.

use std::fmt;

pub const MAX_NAME_CHARS: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than 255 characters")]
    TooLong,
    #[error("name contains control characters")]
    ControlCharacters,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityName(String);

impl EntityName {
    pub fn parse(raw: &str) -> Result<EntityName, NameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(NameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(NameError::ControlCharacters);
        }
        Ok(EntityName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(
            EntityName::parse("  Иван  ").map(|n| n.0),
            Ok("Иван".into())
        );
        assert_eq!(EntityName::parse(" \t "), Err(NameError::Empty));
        assert!(EntityName::parse(&"я".repeat(255)).is_ok());
        assert_eq!(EntityName::parse(&"я".repeat(256)), Err(NameError::TooLong));
        assert_eq!(
            EntityName::parse("a\u{0}b"),
            Err(NameError::ControlCharacters)
        );
    }
}

/// The one rule for names read from the mirror: AmoCRM lets a record have no name
/// (chat-made leads arrive with `name=''`), and such a record shows `name: null`,
/// never an empty or blank string. Webhooks and reconciliation store what AmoCRM
/// holds (trimmed; `''` for none); this is where reads turn it into `None`.
pub fn present_name(stored: String) -> Option<String> {
    (!stored.trim().is_empty()).then_some(stored)
}

#[cfg(test)]
mod present_name_tests {
    use super::present_name;

    #[test]
    fn empty_and_blank_names_read_as_none() {
        assert_eq!(present_name(String::new()), None);
        assert_eq!(present_name("  ".into()), None);
        assert_eq!(present_name("Заказ".into()), Some("Заказ".into()));
    }
}

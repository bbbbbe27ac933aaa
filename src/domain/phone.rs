//! `Phone`: a telephone number that is always valid and normalised to E.164.
//!
//! Clients type phones in every shape (`8 (916) 123-45-67`, `+7 916 1234567`,
//! `79161234567`); the mirror and the deduplication rules only ever see the one
//! E.164 form, so equal phones are equal strings.

use std::fmt;
use std::str::FromStr;

use phonenumber::{country, Mode};

/// The region a phone without an international prefix is read in (`RU` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    pub fn id(self) -> country::Id {
        self.0
    }
}

impl Default for Region {
    fn default() -> Self {
        Region(country::Id::RU)
    }
}

impl FromStr for Region {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .to_ascii_uppercase()
            .parse::<country::Id>()
            .map(Region)
            .map_err(|_| format!("`{s}` is not an ISO 3166-1 alpha-2 region code"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone is empty")]
    Empty,
    #[error("phone is too long")]
    TooLong,
    #[error("phone is not a recognisable telephone number")]
    Unparsable,
    #[error("phone is not a valid number for its region")]
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    /// Length of the country calling code inside `e164` (after the `+`).
    code_len: usize,
}

/// Longest input worth handing to the parser; real numbers with spacing and an
/// extension are far shorter, and this bounds the work done on hostile input.
const MAX_INPUT_LEN: usize = 64;

impl Phone {
    pub fn parse(raw: &str, region: Region) -> Result<Phone, PhoneError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneError::Empty);
        }
        if raw.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let number = parse_number(raw, region)?;
        let code_len = number.code().value().to_string().len();
        let e164 = number.format().mode(Mode::E164).to_string();
        Ok(Phone { e164, code_len })
    }

    /// Rebuilds a phone from its stored E.164 form (the database only holds valid ones).
    pub fn from_e164(e164: &str) -> Result<Phone, PhoneError> {
        if !e164.starts_with('+') {
            return Err(PhoneError::Unparsable);
        }
        Phone::parse(e164, Region::default())
    }

    pub fn as_e164(&self) -> &str {
        &self.e164
    }

    /// The national significant number: what AmoCRM's full-text `query` is asked
    /// for, because it finds the contact whatever prefix the manager typed.
    pub fn national_digits(&self) -> &str {
        &self.e164[1 + self.code_len..]
    }
}

fn parse_number(raw: &str, region: Region) -> Result<phonenumber::PhoneNumber, PhoneError> {
    let first = phonenumber::parse(Some(region.id()), raw).map_err(|_| PhoneError::Unparsable)?;
    if first.is_valid() {
        return Ok(first);
    }
    // `79161234567`: a full international number typed without the `+`. Only a
    // reading that makes it valid is accepted, so national numbers are not re-read.
    let digits_only = raw.chars().all(|c| c.is_ascii_digit());
    if digits_only {
        if let Ok(again) = phonenumber::parse(None, format!("+{raw}")) {
            if again.is_valid() {
                return Ok(again);
            }
        }
    }
    Err(PhoneError::Invalid)
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ru(raw: &str) -> Result<String, PhoneError> {
        Phone::parse(raw, Region::default()).map(|p| p.as_e164().to_owned())
    }

    #[test]
    fn russian_spellings_of_one_number_normalise_to_the_same_e164() {
        for raw in [
            "8 (916) 123-45-67",
            "+7 916 1234567",
            "79161234567",
            "89161234567",
            "+7 (916) 123-45-67",
            "  9161234567 ",
            "tel:+7-916-123-45-67",
        ] {
            assert_eq!(ru(raw).as_deref(), Ok("+79161234567"), "input {raw:?}");
        }
    }

    #[test]
    fn other_regions_keep_their_country_code() {
        assert_eq!(ru("+1 650 253 0000").as_deref(), Ok("+16502530000"));
        assert_eq!(ru("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
        let us: Region = "us".parse().expect("region");
        let phone = Phone::parse("(650) 253-0000", us).expect("valid US number");
        assert_eq!(phone.as_e164(), "+16502530000");
    }

    #[test]
    fn garbage_and_impossible_numbers_are_rejected_with_a_reason() {
        assert_eq!(ru(""), Err(PhoneError::Empty));
        assert_eq!(ru("   "), Err(PhoneError::Empty));
        assert_eq!(ru("hello"), Err(PhoneError::Unparsable));
        assert_eq!(ru("123"), Err(PhoneError::Invalid));
        assert_eq!(ru(&"9".repeat(65)), Err(PhoneError::TooLong));
        assert!(ru("+7 916 123").is_err());
    }

    #[test]
    fn national_digits_are_the_number_without_country_code() {
        let phone = Phone::parse("8 (916) 123-45-67", Region::default()).expect("valid");
        assert_eq!(phone.national_digits(), "9161234567");
        let uk = Phone::parse("+44 20 7946 0958", Region::default()).expect("valid");
        assert_eq!(uk.national_digits(), "2079460958");
    }

    #[test]
    fn stored_e164_round_trips() {
        let phone = Phone::from_e164("+79161234567").expect("stored form");
        assert_eq!(phone.as_e164(), "+79161234567");
        assert!(Phone::from_e164("89161234567").is_err());
    }

    #[test]
    fn region_codes_parse_case_insensitively() {
        assert!("ru".parse::<Region>().is_ok());
        assert!("XX".parse::<Region>().is_err());
    }
}

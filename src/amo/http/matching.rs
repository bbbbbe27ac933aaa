//! Deciding which AmoCRM answers are really ours: `query` hits that hold the very
//! phone, and the created item that carries our `request_id`.

use crate::amo::wire;
use crate::domain::{Phone, Region};

/// Below this many digits a "same tail" comparison matches too much by accident.
const MIN_FALLBACK_DIGITS: usize = 6;

/// The item AmoCRM created for our `request_id`; a lone item counts when AmoCRM echoes none.
pub(super) fn pick_created(items: &[wire::CreatedDto], request_id: &str) -> Option<i64> {
    if let Some(ours) = items.iter().find(|i| {
        i.request_id
            .as_ref()
            .is_some_and(|r| r.contains(request_id))
    }) {
        return Some(ours.id);
    }
    match items {
        [only] if only.request_id.is_none() => Some(only.id),
        _ => None,
    }
}

/// Whether one raw PHONE value is the same number as `phone`. Values that parse are
/// compared as E.164; only unparsable ones fall back to "ends with the national digits".
pub(super) fn phone_value_matches(value: &str, phone: &Phone, region: Region) -> bool {
    match Phone::parse(value, region) {
        Ok(parsed) => parsed.as_e164() == phone.as_e164(),
        Err(_) => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            digits.len() >= MIN_FALLBACK_DIGITS && digits.ends_with(phone.national_digits())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ru(raw: &str) -> Phone {
        Phone::parse(raw, Region::default()).expect("valid test phone")
    }

    fn matches(value: &str) -> bool {
        phone_value_matches(value, &ru("+79161234567"), Region::default())
    }

    #[test]
    fn any_spelling_of_the_same_number_matches() {
        for value in [
            "+7 (916) 123-45-67",
            "8 916 123 45 67",
            "79161234567",
            "9161234567",
        ] {
            assert!(matches(value), "{value:?} should match");
        }
    }

    #[test]
    fn numbers_that_merely_contain_the_digits_do_not_match() {
        for value in [
            "+7 916 123 45 60",
            "+49 9161 234567",
            "+79161234567000",
            "",
            "call me",
        ] {
            assert!(!matches(value), "{value:?} must not match");
        }
    }

    #[test]
    fn an_unparsable_value_falls_back_to_its_digit_tail() {
        assert!(matches("моб. 8-916-123-45-67 (Иван) доб. x"));
        assert!(!matches("моб. 8-916-123-45-60 (Иван) доб. x"));
    }

    #[test]
    fn the_digit_fallback_needs_at_least_six_digits() {
        // Niue numbers have four national digits: a bare "4002" anywhere is no evidence.
        let niue = Phone::parse("+683 4002", Region::default()).expect("valid Niue number");
        assert!(phone_value_matches("+683 4002", &niue, Region::default()));
        assert!(!phone_value_matches("room 4002", &niue, Region::default()));
    }

    #[test]
    fn the_created_item_is_found_by_request_id_or_as_the_only_unlabelled_one() {
        let item = |id, rid: Option<&str>| wire::CreatedDto {
            id,
            request_id: rid.map(|r| wire::RequestId::One(r.into())),
        };
        assert_eq!(
            pick_created(&[item(1, Some("a")), item(2, Some("b"))], "b"),
            Some(2)
        );
        assert_eq!(pick_created(&[item(3, None)], "b"), Some(3));
        assert_eq!(pick_created(&[item(4, Some("zzz"))], "b"), None);
        assert_eq!(pick_created(&[], "b"), None);
    }
}

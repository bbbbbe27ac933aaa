//! Deciding which AmoCRM answers are really ours: `query` hits that hold the very
//! phone, and the created item that carries our `request_id`.

use crate::amo::wire;
use crate::domain::{Phone, Region};

/// Below this many digits a "same tail" comparison matches too much by accident.
const MIN_FALLBACK_DIGITS: usize = 6;

/// For each of `count` items sent with request ids `"0"`, `"1"`, …, what AmoCRM
/// created for it, matched by the echoed `request_id`. Only a batch of one may take
/// a lone reply item that echoes no id: in a batch, guessing would mix records up.
pub(super) fn match_created<T: Copy>(
    count: usize,
    replies: &[(Option<&wire::RequestId>, T)],
) -> Vec<Option<T>> {
    (0..count)
        .map(|i| {
            let wanted = i.to_string();
            let echoed = replies
                .iter()
                .find(|(rid, _)| rid.is_some_and(|r| r.contains(&wanted)));
            match (echoed, replies) {
                (Some((_, created)), _) => Some(*created),
                (None, [(None, created)]) if count == 1 => Some(*created),
                _ => None,
            }
        })
        .collect()
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
    fn created_items_are_matched_by_request_id_and_only_a_lone_one_without() {
        let one = |r: &str| wire::RequestId::One(r.into());
        let many = wire::RequestId::Many(vec!["1".into()]);
        let (a, b, z) = (one("0"), one("2"), one("zzz"));
        assert_eq!(
            match_created(3, &[(Some(&b), 20), (Some(&many), 10), (Some(&a), 0)]),
            vec![Some(0), Some(10), Some(20)]
        );
        assert_eq!(match_created(1, &[(None, 3)]), vec![Some(3)]);
        assert_eq!(match_created(2, &[(None, 3)]), vec![None, None]);
        assert_eq!(match_created(1, &[(Some(&z), 4)]), vec![None]);
        assert_eq!(match_created::<i64>(2, &[]), vec![None, None]);
    }
}

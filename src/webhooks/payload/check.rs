//! The acknowledgement's look at a form body: would it build a tree, and which
//! account sent it. Building the tree (and reading every event out of it) was a
//! fifth of the CPU an acknowledgement took; the worker builds it anyway when it
//! applies the delivery. This pass only splits the keys and sorts their paths.
//!
//! It answers for the common case and leaves every other one to the full parse,
//! so the two can never disagree: a body that uses `[]` (whose meaning depends on
//! the keys before it), hits a limit, is cut off inside a key, or has a key that is a
//! value and nested keys at once (the full parse keeps the last, as PHP does) is
//! `Unsure`, and the full parse decides and names any problem.

use super::brackets::{split_key_into, Segment};
use super::tree::MAX_VALUES;

/// The account keys' raw values, when the body is certain to build a tree.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Checked<'a> {
    Valid {
        subdomain: Option<&'a str>,
        id: Option<&'a str>,
    },
    Unsure,
}

/// Checks decoded form pairs. Paths are compared as strings, which is exact: the
/// tree's keys turn only canonical decimals (no leading zero) into indices, so
/// two segments are the same key exactly when they are the same text.
pub(super) fn form_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Checked<'a> {
    let mut segments: Vec<&'a str> = Vec::new();
    let mut paths: Vec<(u32, u32)> = Vec::new();
    let mut path = Vec::new();
    let (mut subdomain, mut id) = (None, None);
    for (count, (key, value)) in pairs.into_iter().enumerate() {
        if count == MAX_VALUES {
            return Checked::Unsure;
        }
        match split_key_into(key, &mut path) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return Checked::Unsure,
        }
        let start = segments.len();
        for segment in &path {
            match segment {
                Segment::Named(name) => segments.push(name),
                Segment::Append => return Checked::Unsure,
            }
        }
        match &segments[start..] {
            ["account", "subdomain"] => subdomain = Some(value),
            ["account", "id"] => id = Some(value),
            _ => {}
        }
        // Bodies are bounded far below u32::MAX segments (MAX_VALUES × depth).
        paths.push((start as u32, segments.len() as u32));
    }
    let of = |(start, end): (u32, u32)| &segments[start as usize..end as usize];
    paths.sort_unstable_by(|a, b| of(*a).cmp(of(*b)));
    // After sorting, a path that is a proper prefix of another (a key holding a
    // value and nested keys at once) is directly followed by one that extends it.
    let conflict = paths.windows(2).any(|pair| {
        let (shorter, next) = (of(pair[0]), of(pair[1]));
        next.len() > shorter.len() && next.starts_with(shorter)
    });
    if conflict {
        Checked::Unsure
    } else {
        Checked::Valid { subdomain, id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<'a>(pairs: &[(&'a str, &'a str)]) -> Checked<'a> {
        form_pairs(pairs.iter().copied())
    }

    #[test]
    fn a_delivery_is_valid_and_names_its_account_with_the_last_value_winning() {
        let checked = check(&[
            ("account[subdomain]", "first"),
            ("contacts[add][0][id]", "5"),
            ("contacts[add][0][name]", "Anna"),
            ("account[id]", "29000001"),
            ("account[subdomain]", "example"),
        ]);
        assert_eq!(
            checked,
            Checked::Valid {
                subdomain: Some("example"),
                id: Some("29000001")
            }
        );
    }

    #[test]
    fn conflicts_appends_and_limits_are_left_to_the_full_parse() {
        for pairs in [
            &[("a[b]", "1"), ("a[b][c]", "2")][..],
            &[("a[b][c]", "2"), ("x", "1"), ("a[b]", "1")][..],
            &[("a", "1"), ("a[0]", "2")][..],
            &[("a[]", "1")][..],
        ] {
            assert_eq!(check(pairs), Checked::Unsure, "{pairs:?}");
        }
        let deep = format!("a{}", "[x]".repeat(40));
        assert_eq!(check(&[(deep.as_str(), "1")]), Checked::Unsure);
    }

    #[test]
    fn repeated_keys_and_similar_names_are_no_conflict() {
        let checked = check(&[
            ("a[b]", "1"),
            ("a[b]", "2"),
            ("a[bc][d]", "3"),
            ("a[07][x]", "4"),
            ("a[7]", "5"),
            ("[ignored]", "6"),
        ]);
        assert!(matches!(checked, Checked::Valid { .. }), "{checked:?}");
    }
}

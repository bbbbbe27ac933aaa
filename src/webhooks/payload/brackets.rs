//! Splits a PHP-style form key (`contacts[add][0][name]`) into its path segments,
//! the way PHP builds `$_POST` from AmoCRM's form bodies.

use crate::webhooks::PayloadError;

/// Deepest path a key (or a JSON body) may have; AmoCRM's deepest is
/// `contacts[add][0][custom_fields][0][values][0][value]` (7).
pub(super) const MAX_SEGMENTS: usize = 32;

/// The keys [`split_key_into`] accepts, as a regular expression for the OpenAPI
/// document (`propertyNames`), so that generated deliveries stay within them and a
/// key outside them is known to be refused. A key is refused only when a bracket
/// never closes or it has more than `MAX_SEGMENTS - 1` bracket groups; a key that
/// starts with `[` is dropped as PHP drops it, which is not a refusal.
pub const KEY_PATTERN: &str = r"^(\[[\s\S]*|[^\[]*|[^\[]*(\[[^\]]*\]){1,31}([^\[][\s\S]*)?)$";

/// One step of a key's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment<'a> {
    /// `[name]`, or the part before the first bracket.
    Named(&'a str),
    /// `[]`: the next free index of the list, as PHP appends.
    Append,
}

/// Puts the path of `raw` into `segments` (cleared first; a buffer reused across a
/// body's keys) and returns `false` when PHP would drop the pair (nothing before
/// the first `[`).
///
/// Like PHP, text after a closing bracket that does not open another one is ignored.
/// Unlike PHP, an opening bracket that never closes is an error: AmoCRM's keys are
/// always balanced, so such a key is a body cut off mid-key (a relay's size limit, a
/// broken connection), and storing what came before the cut would apply half an event.
pub(super) fn split_key_into<'a>(
    raw: &'a str,
    segments: &mut Vec<Segment<'a>>,
) -> Result<bool, PayloadError> {
    segments.clear();
    let Some(open) = find(raw, b'[') else {
        segments.extend(non_empty(raw).map(Segment::Named));
        return Ok(!segments.is_empty());
    };
    let Some(base) = non_empty(&raw[..open]) else {
        return Ok(false);
    };
    segments.push(Segment::Named(base));
    let mut rest = &raw[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = find(inner, b']') else {
            return Err(PayloadError::Malformed(format!(
                "key `{}` is cut off: a bracket never closes",
                abbreviate(raw)
            )));
        };
        if segments.len() == MAX_SEGMENTS {
            return Err(PayloadError::Malformed(format!(
                "key `{}` is nested deeper than {MAX_SEGMENTS} levels",
                abbreviate(raw)
            )));
        }
        segments.push(match &inner[..close] {
            "" => Segment::Append,
            name => Segment::Named(name),
        });
        rest = &inner[close + 1..];
    }
    Ok(true)
}

/// [`split_key_into`] with a buffer of its own.
#[cfg(test)]
fn split_key(raw: &str) -> Result<Option<Vec<Segment<'_>>>, PayloadError> {
    let mut segments = Vec::new();
    Ok(split_key_into(raw, &mut segments)?.then_some(segments))
}

fn find(text: &str, byte: u8) -> Option<usize> {
    memchr::memchr(byte, text.as_bytes())
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Keys go into error messages; a hostile one must not make the message huge.
pub(super) fn abbreviate(raw: &str) -> String {
    const SHOWN: usize = 80;
    if raw.chars().count() <= SHOWN {
        raw.to_owned()
    } else {
        raw.chars().take(SHOWN).chain("…".chars()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Segment::{Append, Named};
    use super::*;

    #[test]
    fn a_bracketed_key_becomes_its_path() {
        assert_eq!(
            split_key("contacts[add][0][name]"),
            Ok(Some(vec![
                Named("contacts"),
                Named("add"),
                Named("0"),
                Named("name")
            ]))
        );
        assert_eq!(split_key("type"), Ok(Some(vec![Named("type")])));
    }

    #[test]
    fn empty_brackets_mean_append() {
        assert_eq!(
            split_key("tags[][name]"),
            Ok(Some(vec![Named("tags"), Append, Named("name")]))
        );
    }

    #[test]
    fn keys_without_a_name_before_the_brackets_are_dropped_like_php_does() {
        assert_eq!(split_key("[a][b]"), Ok(None));
        assert_eq!(split_key(""), Ok(None));
    }

    #[test]
    fn text_after_the_last_bracket_is_ignored() {
        assert_eq!(
            split_key("a[b]tail"),
            Ok(Some(vec![Named("a"), Named("b")]))
        );
        assert_eq!(
            split_key("a[b[c]"),
            Ok(Some(vec![Named("a"), Named("b[c")]))
        );
    }

    #[test]
    fn a_key_cut_off_inside_a_bracket_is_malformed() {
        for cut in ["a[b][c", "a[b", "contacts[add][0][", "a[b]["] {
            assert!(
                matches!(split_key(cut), Err(PayloadError::Malformed(m)) if m.contains("cut off")),
                "{cut}"
            );
        }
    }

    #[test]
    fn thirty_two_segments_are_accepted_and_thirty_three_are_not() {
        let deepest = format!("a{}", "[x]".repeat(MAX_SEGMENTS - 1));
        assert_eq!(
            split_key(&deepest).map(|s| s.map(|s| s.len())),
            Ok(Some(MAX_SEGMENTS))
        );
        let too_deep = format!("a{}", "[x]".repeat(MAX_SEGMENTS));
        assert!(matches!(
            split_key(&too_deep),
            Err(PayloadError::Malformed(_))
        ));
    }

    /// Every key over a small alphabet up to seven characters, plus the depth limit:
    /// the published pattern matches exactly the keys the parser does not refuse.
    #[test]
    fn the_published_key_pattern_matches_exactly_the_accepted_keys() {
        let pattern = regex::Regex::new(KEY_PATTERN).expect("KEY_PATTERN compiles");
        let agrees = |key: &str| pattern.is_match(key) == split_key(key).is_ok();
        let alphabet = ['a', '[', ']', '\n'];
        let mut keys = vec![String::new()];
        let mut checked = 0;
        for _ in 0..7 {
            keys = keys
                .iter()
                .flat_map(|key| alphabet.iter().map(move |c| format!("{key}{c}")))
                .collect();
            for key in &keys {
                assert!(agrees(key), "pattern and parser disagree on {key:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 21_844);
        let deepest = format!("a{}", "[x]".repeat(MAX_SEGMENTS - 1));
        let too_deep = format!("a{}", "[x]".repeat(MAX_SEGMENTS));
        for key in [deepest, too_deep.clone(), format!("{too_deep}tail")] {
            assert!(agrees(&key), "pattern and parser disagree on {key}");
        }
        assert!(!pattern.is_match(&too_deep));
    }

    #[test]
    fn long_keys_are_abbreviated_on_a_character_boundary() {
        let long = "я".repeat(100);
        let shown = abbreviate(&long);
        assert_eq!(shown.chars().count(), 81);
        assert!(shown.ends_with('…'));
        assert_eq!(abbreviate("short"), "short");
    }
}

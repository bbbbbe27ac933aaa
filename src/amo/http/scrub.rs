//! What is kept of AmoCRM's error text: its own words, not what it quoted back from
//! the request. AmoCRM's validator writes values in quotes (`The value "…" is not a
//! valid choice`); phones and ids are long digit runs; e-mail addresses and URLs (our
//! webhook URL carries its secret) are recognisable as such. All of those go.

/// Longer texts are cut: a message, not a document.
const MAX_CHARS: usize = 160;
/// A run of this many digits (spaces, dashes, brackets between them allowed) is a
/// phone number or an id, not a word.
const DIGITS_OF_A_VALUE: usize = 5;
const ELIDED: &str = "…";

/// `text` without quoted spans, digit runs, addresses and URLs, on one line.
pub(super) fn scrub(text: &str) -> String {
    let unquoted = without_number_runs(&without_quoted_spans(text));
    let words: Vec<&str> = unquoted
        .split_whitespace()
        .map(|word| if echoes_a_value(word) { ELIDED } else { word })
        .collect();
    let mut out = words.join(" ");
    if out.chars().count() > MAX_CHARS {
        out = out.chars().take(MAX_CHARS).collect();
        out.push_str(ELIDED);
    }
    out
}

fn echoes_a_value(word: &str) -> bool {
    word.contains('@') || word.contains("://")
}

/// `call +7 (916) 123-45-67 now` -> `call … now`; `max 250` stays.
fn without_number_runs(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let separator = |c: char| matches!(c, ' ' | '-' | '(' | ')' | '.' | '+');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (matches!(chars[i], '+' | '(')
                && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()));
        if !starts_number {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // The run ends with its last digit; separators after it are not part of it.
        let (mut j, mut digits, mut end) = (i, 0, i + 1);
        while j < chars.len() && (chars[j].is_ascii_digit() || separator(chars[j])) {
            if chars[j].is_ascii_digit() {
                digits += 1;
                end = j + 1;
            }
            j += 1;
        }
        if digits >= DIGITS_OF_A_VALUE {
            out.push_str(ELIDED);
        } else {
            out.extend(&chars[i..end]);
        }
        i = end;
    }
    out
}

/// `a "b" c` -> `a "…" c`. An opening quote without its closing one hides the rest.
/// A `'` opens a span only after a space or punctuation, so `don't` stays a word.
fn without_quoted_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let mut previous: Option<char> = None;
    while let Some(c) = chars.next() {
        let closing = match c {
            '"' => Some('"'),
            '`' => Some('`'),
            '«' => Some('»'),
            '“' => Some('”'),
            '‘' => Some('’'),
            '\'' if previous.is_none_or(|p| !p.is_alphanumeric()) => Some('\''),
            _ => None,
        };
        match closing {
            Some(close) => {
                out.push('"');
                out.push_str(ELIDED);
                out.push('"');
                if !chars.by_ref().any(|next| next == close) {
                    break;
                }
                previous = Some(close);
            }
            None => {
                out.push(c);
                previous = Some(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amocrms_own_words_stay_and_what_it_quoted_goes() {
        let cases = [
            (
                "This value should not be blank.",
                "This value should not be blank.",
            ),
            (
                "Too many entities in request, max 250",
                "Too many entities in request, max 250",
            ),
            ("Custom field not found", "Custom field not found"),
            (
                "The value \"Иван Петров\" is not valid.",
                "The value \"…\" is not valid.",
            ),
            (
                "Значение «+7 916 123-45-67» неверно",
                "Значение \"…\" неверно",
            ),
            ("phone 89161234567 exists", "phone … exists"),
            ("call +7 (916) 123-45-67 now", "call … now"),
            ("id12345 and code 404.", "id… and code 404."),
            ("mail ivan@example.com taken", "mail … taken"),
            (
                "hook https://h/webhooks/amocrm/s3cr3t failed",
                "hook … failed",
            ),
            ("can't use 'secret-token' here", "can't use \"…\" here"),
            (
                "unterminated \"Иван Петров and the rest",
                "unterminated \"…\"",
            ),
            ("  several\n lines\tjoined ", "several lines joined"),
        ];
        for (raw, kept) in cases {
            assert_eq!(scrub(raw), kept, "{raw}");
        }
    }

    #[test]
    fn a_long_text_is_cut() {
        let long = "word ".repeat(100);
        let kept = scrub(&long);
        assert_eq!(kept.chars().count(), MAX_CHARS + 1);
        assert!(kept.ends_with(ELIDED));
    }
}

//! Decodes an `application/x-www-form-urlencoded` body into its name/value pairs,
//! exactly as the WHATWG parser (the `form_urlencoded` crate) does, but into one
//! buffer: AmoCRM percent-encodes every bracket, so a per-pair decoder allocates
//! twice per pair, and a delivery has dozens of pairs per entity.

use std::ops::Range;

/// The decoded pairs of one body; names and values are slices of one string.
pub(super) struct FormPairs {
    text: String,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl FormPairs {
    /// Decodes `body`, stopping after `limit` pairs (the caller refuses more).
    pub(super) fn decode(body: &[u8], limit: usize) -> FormPairs {
        let mut pairs = FormPairs {
            text: String::with_capacity(body.len()),
            spans: Vec::new(),
        };
        let mut scratch = Vec::new();
        for piece in pieces(body) {
            if pairs.spans.len() == limit {
                break;
            }
            let (name, value) = match memchr::memchr(b'=', piece) {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &[][..]),
            };
            let name = pairs.push(name, &mut scratch);
            let value = pairs.push(value, &mut scratch);
            pairs.spans.push((name, value));
        }
        pairs
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans
            .iter()
            .map(|(name, value)| (&self.text[name.clone()], &self.text[value.clone()]))
    }

    /// Appends one decoded component ('+' is a space, `%XX` a byte, the bytes UTF-8
    /// with invalid sequences replaced) and returns where it is.
    fn push(&mut self, raw: &[u8], scratch: &mut Vec<u8>) -> Range<usize> {
        let start = self.text.len();
        let bytes = if memchr::memchr2(b'%', b'+', raw).is_some() {
            percent_decode(raw, scratch);
            &scratch[..]
        } else {
            raw
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text.push_str(text),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        start..self.text.len()
    }
}

/// The non-empty `&`-separated pieces of `body`.
fn pieces(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'&', body)
        .chain(std::iter::once(body.len()))
        .map(move |end| {
            let piece = &body[start..end];
            start = end + 1;
            piece
        })
        .filter(|piece| !piece.is_empty())
}

/// `raw` with '+' as a space and each valid `%XX` as its byte, into `out`.
fn percent_decode(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut rest = raw;
    while let Some(at) = memchr::memchr2(b'%', b'+', rest) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        if rest[0] == b'+' {
            out.push(b' ');
            rest = &rest[1..];
            continue;
        }
        match (rest.get(1).and_then(hex), rest.get(2).and_then(hex)) {
            (Some(high), Some(low)) => {
                out.push(high << 4 | low);
                rest = &rest[3..];
            }
            _ => {
                out.push(b'%');
                rest = &rest[1..];
            }
        }
    }
    out.extend_from_slice(rest);
}

fn hex(digit: &u8) -> Option<u8> {
    (*digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(body: &[u8]) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body).into_owned().collect()
    }

    fn decoded(body: &[u8]) -> Vec<(String, String)> {
        FormPairs::decode(body, usize::MAX)
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    #[test]
    fn amocrm_bracket_keys_and_encoded_values_decode() {
        let body = b"contacts%5Badd%5D%5B0%5D%5Bname%5D=Ivan+Petrov&account[id]=1&phone=%2B7%20916";
        assert_eq!(
            decoded(body),
            [
                ("contacts[add][0][name]".into(), "Ivan Petrov".into()),
                ("account[id]".into(), "1".into()),
                ("phone".into(), "+7 916".into()),
            ]
        );
    }

    #[test]
    fn edge_cases_match_the_whatwg_parser() {
        for body in [
            &b""[..],
            b"&&a=1&&",
            b"=",
            b"a",
            b"a==b",
            b"%",
            b"%4",
            b"%zz=%41%4a%4A",
            b"a=%FF%FE",
            b"%E2%82%AC=%E2%82",
            b"\xff\xfe=\xc3\xa9",
            b"k%2",
            b"++=+%2B",
        ] {
            assert_eq!(
                decoded(body),
                reference(body),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn decoding_stops_at_the_limit() {
        assert_eq!(FormPairs::decode(b"a=1&b=2&c=3", 2).iter().count(), 2);
    }

    proptest! {
        #[test]
        fn any_body_decodes_as_the_whatwg_parser_decodes_it(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'&'), Just(b'='), Just(b'%'), Just(b'+'), Just(b'['), Just(b']'),
                    Just(b'4'), Just(b'a'), Just(b'F'), Just(0xC3), Just(0xA9), any::<u8>(),
                ],
                0..64,
            )
        ) {
            prop_assert_eq!(decoded(&body), reference(&body));
        }
    }
}

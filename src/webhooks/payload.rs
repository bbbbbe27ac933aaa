//! Turns the raw body of an AmoCRM webhook delivery into a [`Delivery`].
//!
//! AmoCRM posts `application/x-www-form-urlencoded` bodies with PHP-style bracket keys
//! (`leads[status][0][id]=…`) in the api/v2 field layout. The same shape re-encoded as JSON
//! (lists either as arrays or as objects keyed `"0"`, `"1"`, …) is accepted too, so relays
//! and replays of stored deliveries can use it. Both decode into one tree, read once.

mod brackets;
mod check;
mod form;
mod interpret;
mod tree;

use super::{Account, Delivery, PayloadError};
use form::FormPairs;

pub use brackets::KEY_PATTERN as WEBHOOK_KEY_PATTERN;

enum Encoding {
    Form,
    Json,
}

pub fn parse_delivery(content_type: Option<&str>, body: &[u8]) -> Result<Delivery, PayloadError> {
    let encoding = encoding(content_type)?;
    if body.trim_ascii().is_empty() {
        return Err(PayloadError::Malformed("empty body".into()));
    }
    // Decoded first so the tree can borrow from them; one pair past the limit is
    // enough to refuse the body.
    let pairs: FormPairs;
    let root = match encoding {
        Encoding::Form => {
            pairs = FormPairs::decode(body, tree::MAX_VALUES + 1);
            tree::from_pairs(pairs.iter())?
        }
        Encoding::Json => {
            let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            let value = serde_json::from_slice(body)
                .map_err(|error| PayloadError::Malformed(format!("invalid JSON: {error}")))?;
            tree::from_json(value)?
        }
    };
    Ok(interpret::delivery(&root))
}

/// What acknowledging a delivery needs to know: that [`parse_delivery`] will take
/// the body (otherwise its error, the same one) and which account sent it.
pub fn check_delivery(content_type: Option<&str>, body: &[u8]) -> Result<Account, PayloadError> {
    if let (Ok(Encoding::Form), false) = (encoding(content_type), body.trim_ascii().is_empty()) {
        let pairs = FormPairs::decode(body, tree::MAX_VALUES + 1);
        if let check::Checked::Valid { subdomain, id } = check::form_pairs(pairs.iter()) {
            return Ok(interpret::account_of(subdomain, id));
        }
    }
    parse_delivery(content_type, body).map(|delivery| delivery.account)
}

/// AmoCRM always names the form type, but a missing header is read as form too: that is
/// what the body is, whatever a proxy did to the header.
fn encoding(content_type: Option<&str>) -> Result<Encoding, PayloadError> {
    let raw = content_type.unwrap_or_default();
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let lower = essence.to_ascii_lowercase();
    if lower.is_empty() || lower == "application/x-www-form-urlencoded" {
        Ok(Encoding::Form)
    } else if lower == "application/json" || (lower.contains('/') && lower.ends_with("+json")) {
        Ok(Encoding::Json)
    } else {
        Err(PayloadError::UnsupportedContentType(essence.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_matched_without_case_or_parameters() {
        for form in [
            None,
            Some(""),
            Some("  "),
            Some("application/x-www-form-urlencoded"),
            Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
        ] {
            assert!(matches!(encoding(form), Ok(Encoding::Form)), "{form:?}");
        }
        for json in [
            "application/json",
            "APPLICATION/JSON;charset=utf-8",
            "application/vnd.amocrm+json",
        ] {
            assert!(matches!(encoding(Some(json)), Ok(Encoding::Json)), "{json}");
        }
    }

    #[test]
    fn other_content_types_are_named_in_the_error() {
        for (sent, named) in [
            ("text/plain; charset=utf-8", "text/plain"),
            ("multipart/form-data; boundary=x", "multipart/form-data"),
            ("+json", "+json"),
        ] {
            assert_eq!(
                encoding(Some(sent)).err(),
                Some(PayloadError::UnsupportedContentType(named.into()))
            );
        }
    }
}

//! Turning raw requests into typed input, with every failure a problem+json:
//! a JSON body extractor that names the wrong field, and query-parameter parsers.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use validator::{ValidationErrors, ValidationErrorsKind};

use crate::domain::FieldError;
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body of type `T`. Unlike `web::Json`, a wrong type is reported with the
/// path of the field (`contact.phone`), and every failure is an `ApiError`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.body_limit)
            .unwrap_or(64 * 1024);
        let checks = check_content_type(req).and_then(|()| check_declared_length(req, limit));
        let body = read_limited(payload.take(), limit);
        Box::pin(async move {
            checks?;
            parse_json(&body.await?).map(JsonBody)
        })
    }
}

/// A raw body of at most `WEBHOOK_MAX_BODY_BYTES`, for webhooks, which are stored
/// verbatim. A function, not an extractor: the handler reads it only once the secret
/// in the path is known to be right.
pub async fn read_raw_body(req: &HttpRequest, payload: Payload) -> Result<Vec<u8>, ApiError> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.webhook_body_limit)
        .unwrap_or(1024 * 1024);
    check_declared_length(req, limit)?;
    Ok(read_limited(payload, limit).await?.to_vec())
}

/// Reads the body, failing with 413 as soon as it grows past `limit`.
pub(super) async fn read_limited(
    mut payload: Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::MalformedBody(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// JSON, `+json` types and no content type at all are accepted (the earlier Node
/// service's clients always sent JSON); anything else is a 415.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => Err(ApiError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedBody(
            "the body is empty; send a JSON object".into(),
        ));
    }
    // serde would happily read a struct from a JSON array; only objects are accepted.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            return Err(ApiError::MalformedBody("the body is not valid JSON".into()));
        }
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let inner = err.inner();
        if inner.is_data() {
            let path = err.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::Validation(vec![FieldError::new(
                field,
                without_position(&inner.to_string()),
            )])
        } else {
            ApiError::MalformedBody(format!("the body is not valid JSON: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// For `#[serde(default, deserialize_with = "optional_integer")]` on an `Option<i64>` body
/// field. JSON, and JSON Schema's `integer`, do not tell `7` from `7.0` or `7e0`, so a whole
/// number written with a fraction or exponent is that integer; `7.5` is refused, and so is
/// such a float from 2^53 up, where floats no longer tell neighbouring integers apart.
pub fn optional_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalInteger)
}

struct OptionalInteger;

/// 2^53: below it, a whole `f64` is exactly the integer that was written.
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0;

impl<'de> serde::de::Visitor<'de> for OptionalInteger {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &"an int64"))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(E::custom("must be a whole number"));
        }
        whole(v).map(Some).ok_or_else(|| {
            E::custom("must be a whole number written without a fraction or exponent from 2^53 up")
        })
    }
}

/// The integer a float stands for: whole, and below 2^53 so the cast is exact.
fn whole(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.abs() < EXACT_IN_F64).then_some(v as i64)
}

/// An integer in a query string: `12`, or a whole number written as a JSON number with
/// a fraction or exponent (`12.0`, `1.2e1`), as in bodies.
fn query_integer(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().or_else(|| {
        let json_number = raw
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        serde_json::from_str::<f64>(raw)
            .ok()
            .filter(|_| json_number)
            .and_then(whole)
    })
}

/// serde_json appends "at line 1 column 9" and names Rust structs; the field
/// name says more, and clients know objects, not structs.
fn without_position(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    match message.find("expected struct ") {
        Some(at) => format!("{}expected an object", &message[..at]),
        None => message.to_owned(),
    }
}

/// Flattens validator's nested errors into `field` / `parent.field` entries.
pub fn field_errors(errors: &ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    collect(errors, "", &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

fn collect(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| e.code.to_string());
                    out.push(FieldError::new(path.clone(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, &format!("{path}.{index}"), out);
                }
            }
        }
    }
}

/// An optional positive id in a query string (`contact_id=12`).
pub fn query_id(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<i64> {
    let raw = raw.map(str::trim).filter(|r| !r.is_empty())?;
    match query_integer(raw) {
        Some(id) if id > 0 => Some(id),
        _ => {
            errors.push(FieldError::new(field, "must be a positive integer"));
            None
        }
    }
}

/// The schema of a `query_flag` parameter: `true` or `false`, also written `1` or `0`.
pub fn flag_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .enum_values(Some([
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(1),
            serde_json::json!(0),
        ]))
        .build()
}

/// `?include_deleted=true|false` (also `1`/`0`); absent means false.
pub fn query_flag(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> bool {
    match raw.map(str::trim) {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            errors.push(FieldError::new(field, "must be true or false"));
            false
        }
    }
}

/// The query of a single-record `GET`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// `true` shows a record deleted in AmoCRM.
    #[param(schema_with = flag_schema)]
    include_deleted: Option<String>,
}

impl ShowQuery {
    pub fn include_deleted(&self) -> Result<bool, ApiError> {
        let mut errors = Vec::new();
        let flag = query_flag(
            "include_deleted",
            self.include_deleted.as_deref(),
            &mut errors,
        );
        if errors.is_empty() {
            Ok(flag)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// `limit` in 1..=500 (default 50) and the keyset `cursor` of a list request.
pub fn page_params(
    limit: Option<&str>,
    cursor: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> (i64, Option<i64>) {
    let limit = match limit.map(str::trim) {
        None | Some("") => 50,
        Some(raw) => match query_integer(raw) {
            Some(n) if (1..=500).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", "must be an integer from 1 to 500"));
                50
            }
        },
    };
    let cursor = cursor
        .filter(|c| !c.is_empty())
        .and_then(|raw| match raw.parse::<i64>() {
            Ok(id) if id >= 0 => Some(id),
            _ => {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor returned by this API",
                ));
                None
            }
        });
    (limit, cursor)
}

/// Keeps `limit` rows of `rows` (fetched with `limit + 1`) and the cursor to the next page.
pub fn paginate<T>(
    mut rows: Vec<T>,
    limit: i64,
    id_of: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| id_of(r).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: Option<String>,
        contact: Option<Inner>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        phone: Option<String>,
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation(list) => list.into_iter().map(|f| f.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_name_the_nested_field() {
        let err =
            parse_json::<Body>(br#"{"name":"x","contact":{"phone":12}}"#).expect_err("wrong type");
        assert_eq!(fields(err), ["contact.phone"]);
        let err = parse_json::<Body>(br#"{"contact":"abc"}"#).expect_err("not an object");
        match err {
            ApiError::Validation(list) => assert_eq!(
                list[0].message,
                "invalid type: string \"abc\", expected an object"
            ),
            other => panic!("expected a validation error, got {other:?}"),
        }
        let err = parse_json::<Body>(b"[1,2]").expect_err("not an object");
        assert_eq!(fields(err), ["body"]);
    }

    #[derive(Debug, serde::Deserialize)]
    struct Count {
        #[serde(default, deserialize_with = "optional_integer")]
        n: Option<i64>,
    }

    fn count(body: &str) -> Result<Option<i64>, ApiError> {
        parse_json::<Count>(body.as_bytes()).map(|c| c.n)
    }

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        assert_eq!(count("{}").unwrap(), None);
        assert_eq!(count(r#"{"n":null}"#).unwrap(), None);
        assert_eq!(count(r#"{"n":7}"#).unwrap(), Some(7));
        assert_eq!(count(r#"{"n":-7}"#).unwrap(), Some(-7));
        assert_eq!(count(r#"{"n":7.0}"#).unwrap(), Some(7));
        assert_eq!(count(r#"{"n":7e2}"#).unwrap(), Some(700));
        assert_eq!(count(r#"{"n":-0.0}"#).unwrap(), Some(0));
        assert_eq!(
            count(r#"{"n":9223372036854775807}"#).unwrap(),
            Some(i64::MAX)
        );
        assert_eq!(
            count(r#"{"n":9007199254740991.0}"#).unwrap(),
            Some((1 << 53) - 1)
        );
        for wrong in [
            r#"{"n":7.5}"#,
            r#"{"n":9007199254740992.0}"#,
            r#"{"n":1e300}"#,
            r#"{"n":9223372036854775808}"#,
            r#"{"n":"7"}"#,
            r#"{"n":true}"#,
            r#"{"n":[7]}"#,
        ] {
            assert_eq!(fields(count(wrong).expect_err(wrong)), ["n"], "{wrong}");
        }
    }

    #[test]
    fn a_fraction_is_refused_as_not_a_whole_number() {
        match count(r#"{"n":7.5}"#) {
            Err(ApiError::Validation(list)) => {
                assert_eq!(list[0].message, "must be a whole number")
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn query_integers_may_be_written_as_whole_numbers_too() {
        for (raw, value) in [
            ("12", 12),
            ("12.0", 12),
            ("1.2e1", 12),
            ("-3", -3),
            ("-0.0", 0),
        ] {
            assert_eq!(query_integer(raw), Some(value), "{raw}");
        }
        for raw in [
            "",
            "1.5",
            "abc",
            "0x10",
            "inf",
            "NaN",
            "1e400",
            " 1",
            "1 ",
            "9007199254740992.0",
        ] {
            assert_eq!(query_integer(raw), None, "{raw}");
        }
        let mut errors = Vec::new();
        assert_eq!(query_id("status_id", Some("7.0"), &mut errors), Some(7));
        assert_eq!(page_params(Some("2e2"), None, &mut errors), (200, None));
        assert!(errors.is_empty());
    }

    #[test]
    fn broken_json_and_empty_bodies_are_malformed_not_invalid() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\":"),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b"  "),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b"{} trailing"),
            Err(ApiError::MalformedBody(_))
        ));
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        let mut errors = Vec::new();
        assert_eq!(page_params(None, None, &mut errors), (50, None));
        assert_eq!(
            page_params(Some("500"), Some("41"), &mut errors),
            (500, Some(41))
        );
        assert!(errors.is_empty());
        page_params(Some("0"), Some("abc"), &mut errors);
        page_params(Some("501"), None, &mut errors);
        let names: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(names, ["limit", "cursor", "limit"]);
    }

    #[test]
    fn a_full_page_carries_a_cursor_and_a_short_one_does_not() {
        let (rows, next) = paginate(vec![1, 2, 3], 2, |r| *r);
        assert_eq!((rows, next.as_deref()), (vec![1, 2], Some("2")));
        let (rows, next) = paginate(vec![1, 2], 2, |r| *r);
        assert_eq!((rows, next), (vec![1, 2], None));
    }
}

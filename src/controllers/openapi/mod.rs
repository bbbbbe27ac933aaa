//! The OpenAPI 3.1 description of the HTTP API, served at `/openapi.json`: each
//! operation from its handler's `#[utoipa::path]` and typed bodies, who may call it
//! and its `Idempotency-Key` from the route table (`routes`), the error responses from
//! the shared sets in `problems`, every error body `error::Problem`'s own schema.

use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, Object, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use super::problems::problem;
use super::routes::{self, Access, Operations};
use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "amosync",
        description = "Finds or creates contacts and leads in AmoCRM through a MySQL mirror. \
                       Every error is application/problem+json with a stable `code`."
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "contacts", description = "Find-or-create and read contacts"),
        (name = "leads", description = "Find-or-create and read leads"),
        (name = "legacy", description = "Drop-in routes of the earlier Node service"),
        (name = "amocrm", description = "The AmoCRM account's catalogue: custom fields and pipelines"),
        (name = "sync", description = "The outbox of work still on its way to AmoCRM"),
        (name = "webhooks", description = "AmoCRM's webhook and amosync's subscription"),
        (name = "operations", description = "Health, readiness, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// `bearer`: a token from `API_TOKENS` (or `METRICS_TOKEN` for `/metrics`). Each
/// operation lists the scope it needs as the requirement's roles (OpenAPI 3.1 allows
/// role names for schemes other than OAuth2).
struct BearerScheme;

/// What the scopes mean, for readers of the document.
pub const SCOPES_DESCRIPTION: &str = "A token from API_TOKENS, written \
    name:scope1+scope2:token. Each operation names the scope it needs: `write` posts \
    contacts and leads (also the drop-in routes), `read` reads the mirror's contacts and \
    leads and the AmoCRM account's catalogue, `admin` lists and retries sync jobs and manages amosync's webhook. A token \
    written without scopes (name:token) holds `write` only. A token lacking the scope \
    gets 403 insufficient_scope. /metrics takes METRICS_TOKEN instead.";

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(SCOPES_DESCRIPTION))
                    .build(),
            ),
        );
    }
}

/// What `EntityName::parse` accepts, as a regular expression (the tests below hold the
/// two equal): 1 to 255 characters once surrounding whitespace is trimmed, no control
/// characters inside.
const ENTITY_NAME_PATTERN: &str = "^[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]([^\\u0000-\\u001f\\u007f-\\u009f]{0,253}[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$";

/// The bodies whose `name` is an `EntityName`: each gets `ENTITY_NAME_PATTERN`
/// (`#[schema(pattern)]` takes a literal only, which would be pasted in each).
const NAMED_BODIES: [&str; 2] = ["ContactRequest", "LeadRequest"];

struct NamePattern;

impl Modify for NamePattern {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(schemas) = openapi.components.as_mut().map(|c| &mut c.schemas) else {
            return;
        };
        for body in NAMED_BODIES {
            let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(body) else {
                continue;
            };
            if let Some(RefOr::T(Schema::Object(name))) = object.properties.get_mut("name") {
                name.pattern = Some(ENTITY_NAME_PATTERN.to_owned());
            }
        }
    }
}

/// A lead names its contact by `contact_id` or inline as `contact`, never both
/// (`LeadRequest` refuses the pair with a 422 when it parses). A derived object cannot say so,
/// so the published `LeadRequest` is the derived object together with an `anyOf`: at
/// least one of the two is absent or null.
struct LeadContactChoice;

impl Modify for LeadContactChoice {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(schemas) = openapi.components.as_mut().map(|c| &mut c.schemas) else {
            return;
        };
        let Some(fields) = schemas.remove("LeadRequest") else {
            return;
        };
        let left_out = |field: &str| {
            ObjectBuilder::new()
                .property(field, Object::with_type(Type::Null))
                .build()
        };
        let choice = AllOfBuilder::new()
            .description(Some(
                "A lead, linked to an existing contact (`contact_id`), to a contact found or \
                 created from `contact`, or to none. `contact_id` and `contact` exclude each \
                 other: at most one of them is given (not null).",
            ))
            .item(fields)
            .item(
                AnyOfBuilder::new()
                    .item(left_out("contact"))
                    .item(left_out("contact_id")),
            )
            .build();
        schemas.insert("LeadRequest".to_owned(), RefOr::T(Schema::AllOf(choice)));
    }
}

/// Every query parameter of the API reads an empty value (`?limit=&cursor=`) as absent,
/// which is what OpenAPI's `allowEmptyValue` says. utoipa has no field for it (OpenAPI 3.1
/// discourages it, but it is the keyword for this), so it is written as an extension.
struct BlankQueryIsAbsent;

impl Modify for BlankQueryIsAbsent {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let query = operation
                    .parameters
                    .iter_mut()
                    .flatten()
                    .filter(|p| p.parameter_in == ParameterIn::Query);
                for parameter in query {
                    parameter
                        .extensions
                        .get_or_insert_with(Default::default)
                        .insert("allowEmptyValue".to_owned(), true.into());
                }
            }
        }
    }
}

/// The whole document: the handlers' operations, each completed from its row of the
/// route table.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(Operations::openapi());
    for mounted in routes::mounted() {
        let operation = doc.paths.paths.get_mut(&mounted.path).and_then(|item| {
            routes::operations(item)
                .into_iter()
                .find(|(method, _)| *method == mounted.method)
                .and_then(|(_, operation)| operation.as_mut())
        });
        if let Some(operation) = operation {
            complete(
                operation,
                mounted.endpoint.access,
                mounted.endpoint.idempotent,
            );
        }
    }
    NamePattern.modify(&mut doc);
    LeadContactChoice.modify(&mut doc);
    BlankQueryIsAbsent.modify(&mut doc);
    doc
}

/// What the route table knows of an operation: the scope it needs (with the 401 and
/// 403 that enforce it) and the `Idempotency-Key` header it replays.
fn complete(operation: &mut utoipa::openapi::path::Operation, access: Access, idempotent: bool) {
    if let Access::Token(scope) = access {
        operation.security = Some(vec![SecurityRequirement::new("bearer", [scope.as_str()])]);
        let responses = &mut operation.responses.responses;
        responses.insert("401".into(), problem("Missing or unknown bearer token"));
        responses.insert(
            "403".into(),
            problem(&format!(
                "The token lacks the `{scope}` scope (insufficient_scope)"
            )),
        );
    }
    if idempotent {
        // Operations whose own errors already have a 409 or 422 say these there.
        let responses = &mut operation.responses.responses;
        responses.entry("409".into()).or_insert_with(|| {
            problem("Idempotency-Key still in flight (idempotency_in_progress)")
        });
        responses
            .entry("422".into())
            .or_insert_with(|| problem("Idempotency-Key malformed, or reused with another body"));
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some("Replays the first response to repeats for 24 h"))
            .schema(Some(
                // Optional, so `null` too, as utoipa writes an `Option<String>`.
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .pattern(Some("^[!-~]{1,255}$")),
            ))
            .build();
        operation.parameters.get_or_insert_with(Vec::new).push(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;
    use serde_json::Value;

    use crate::domain::EntityName;

    fn schemas() -> Value {
        serde_json::to_value(super::document()).expect("document")["components"]["schemas"].clone()
    }

    #[test]
    fn a_lead_names_its_contact_by_id_or_inline_never_both() {
        let lead = &schemas()["LeadRequest"];
        let fields = &lead["allOf"][0];
        assert!(fields["properties"]["contact_id"].is_object());
        assert!(fields["properties"]["contact"].is_object());
        let either: Vec<&Value> = lead["allOf"][1]["anyOf"]
            .as_array()
            .expect("anyOf")
            .iter()
            .collect();
        assert_eq!(
            either,
            [
                &serde_json::json!({"type": "object", "properties": {"contact": {"type": "null"}}}),
                &serde_json::json!({"type": "object", "properties": {"contact_id": {"type": "null"}}}),
            ]
        );
    }

    #[test]
    fn every_query_parameter_allows_an_empty_value() {
        let doc = serde_json::to_value(super::document()).expect("document");
        let mut seen = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let parameters = operation["parameters"].as_array().into_iter().flatten();
                for parameter in parameters.filter(|p| p["in"] == "query") {
                    seen += 1;
                    assert_eq!(
                        parameter["allowEmptyValue"], true,
                        "{method} {path} {}",
                        parameter["name"]
                    );
                }
            }
        }
        assert!(seen > 10, "only {seen} query parameters");
    }

    /// The `pattern` of each request body's `name`, compiled (once) as the Rust regex it also is.
    static NAME_PATTERNS: LazyLock<Vec<regex::Regex>> = LazyLock::new(name_patterns);

    fn name_patterns() -> Vec<regex::Regex> {
        let schemas = schemas();
        [
            &schemas["ContactRequest"]["properties"]["name"],
            &schemas["LeadRequest"]["allOf"][0]["properties"]["name"],
        ]
        .into_iter()
        .map(|name| {
            let pattern = name["pattern"].as_str().expect("name has a pattern");
            regex::Regex::new(pattern).expect("pattern compiles")
        })
        .collect()
    }

    /// Characters on either side of every rule `EntityName` applies: whitespace that is
    /// and is not a control character, other controls, and ordinary and astral letters.
    fn name_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => prop::sample::select(vec![
                ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{a0}', '\u{1680}',
                '\u{2000}', '\u{200a}', '\u{2028}', '\u{202f}', '\u{3000}', '\u{feff}',
                '\u{0}', '\u{1}', '\u{1f}', '\u{7f}', '\u{9f}', '\u{ad}', 'a', 'я', '😀',
            ]),
            1 => any::<char>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_published_name_pattern_is_exactly_what_entity_name_accepts(
            chars in prop::collection::vec(name_char(), 0..300),
            padding in 0usize..3,
        ) {
            // Names near the 255-character limit, with and without whitespace around them.
            let core: String = chars.into_iter().collect();
            let name = format!("{}{core}{}", " ".repeat(padding), "\n".repeat(padding));
            let accepted = EntityName::parse(&name).is_ok();
            for pattern in NAME_PATTERNS.iter() {
                prop_assert_eq!(pattern.is_match(&name), accepted, "{:?}", name);
            }
        }
    }

    #[test]
    fn the_name_pattern_edges() {
        let longest = "я".repeat(255);
        let cases = [
            ("Иван".to_owned(), true),
            ("  Иван Петров\t\n".to_owned(), true),
            (longest.clone(), true),
            (format!(" {longest}\u{3000}"), true),
            (format!("{longest}я"), false),
            (String::new(), false),
            (" \t\u{3000}".to_owned(), false),
            ("a\tb".to_owned(), false),
            ("a\u{1}".to_owned(), false),
            ("\u{feff}".to_owned(), true),
        ];
        for (name, accepted) in &cases {
            let (name, accepted) = (name.as_str(), *accepted);
            assert_eq!(EntityName::parse(name).is_ok(), accepted, "{name:?}");
            for pattern in NAME_PATTERNS.iter() {
                assert_eq!(pattern.is_match(name), accepted, "{name:?}");
            }
        }
    }
}

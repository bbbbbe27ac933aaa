//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and the bodies' `ToSchema` derives, served at `/openapi.json`.

use serde::Serialize;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToSchema};

use crate::controllers;

/// Every error body: RFC 9457 problem details plus a stable `code`. It mirrors the
/// private `Problem` that `src/error.rs` renders (a test compares the two).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// `urn:amosync:problem:{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, snake_case: `validation_failed`, `not_found`, `unauthorized`, …
    pub code: String,
    /// 422 only: each wrong field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// `409 already_exists` and `502 amocrm_rejected`: the stored record's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldProblem {
    /// The field path, e.g. `phone` or `contact.phone`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// Always `ok`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// Always `ready`.
    pub status: String,
    pub amocrm: AmoAccessBody,
    /// `AMOSYNC_DEMO`: a demo that accepts the published sample values.
    pub demo: bool,
    /// Variables holding a published sample value (`API_TOKENS`, `WEBHOOK_SECRET`, …):
    /// anyone can use them, so such an instance must not be reachable by others.
    pub sample_values: Vec<String>,
    pub mirror: MirrorBody,
}

/// Whether the mirror is authoritative, i.e. whether `AMO_DEDUP=auto` skips AmoCRM's
/// phone search; ages are seconds since each fact was recorded (null: never).
#[derive(Debug, Serialize, ToSchema)]
pub struct MirrorBody {
    /// `auto`, `remote` or `mirror`.
    pub dedup: String,
    pub authoritative: bool,
    /// When not authoritative: the first fact missing or stale.
    pub reason: Option<String>,
    pub full_import_age_secs: Option<i64>,
    pub webhook_verified_age_secs: Option<i64>,
    pub reconciled_age_secs: Option<i64>,
}

/// AmoCRM access as `/ready` reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AmoAccessBody {
    /// `ok` or `refused`.
    pub state: String,
    /// When refused: `unauthorized`, `payment_required` or `forbidden`.
    pub reason: Option<String>,
    /// When refused: since when, in Unix seconds.
    pub since: Option<u64>,
}

/// AmoCRM's webhook body as it is sent, form-encoded: PHP-style bracketed keys such as
/// `account[id]` or `contacts[add][0][name]`, each with a text value. A JSON object of
/// the same shape is accepted too.
pub struct WebhookForm;

impl utoipa::PartialSchema for WebhookForm {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "AmoCRM's form-encoded (v2) payload: bracketed keys such as `account[id]` or \
                 `contacts[add][0][name]`, each with a text value. At least one pair; every \
                 bracket closes and a key has at most 31 bracket groups. A JSON object of \
                 the same shape is accepted too.",
            ))
            .min_properties(Some(1))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(crate::webhooks::WEBHOOK_KEY_PATTERN)),
            ))
            .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
            .into()
    }
}

impl ToSchema for WebhookForm {}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAccepted {
    /// Always `accepted`.
    pub status: String,
    pub inbox_id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Whether amosync's own hook is subscribed.
    pub subscribed: bool,
    /// amosync's own hook (none or one), its secret masked. Other integrations' hooks
    /// carry their own secrets and are never shown.
    pub webhooks: Vec<controllers::HookBody>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "amosync",
        description = "Finds or creates contacts and leads in AmoCRM through a MySQL mirror. \
                       Every error is application/problem+json with a stable `code`."
    ),
    paths(
        controllers::contacts::create_contact,
        controllers::contacts::list_contacts,
        controllers::contacts::get_contact,
        controllers::leads::create_lead,
        controllers::leads::list_leads,
        controllers::leads::get_lead,
        controllers::legacy::create_contact_legacy,
        controllers::legacy::create_lead_legacy,
        controllers::sync_jobs::list_jobs,
        controllers::sync_jobs::retry_job,
        controllers::webhooks::receive_webhook,
        controllers::webhooks::list_webhooks,
        controllers::webhooks::subscribe_webhook,
        controllers::webhooks::unsubscribe_webhook,
        controllers::health::health,
        controllers::health::ready,
        controllers::metrics::get_metrics,
        controllers::docs::openapi_json,
        controllers::docs::docs_ui,
        controllers::docs::docs_slash,
    ),
    components(schemas(ProblemDetails, FieldProblem)),
    modifiers(&BearerScheme, &LeadContactChoice, &BlankQueryIsAbsent),
    tags(
        (name = "contacts", description = "Find-or-create and read contacts"),
        (name = "leads", description = "Find-or-create and read leads"),
        (name = "legacy", description = "Drop-in routes of the earlier Node service"),
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
    leads, `admin` lists and retries sync jobs and manages amosync's webhook. A token \
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

/// A lead names its contact by `contact_id` or inline as `contact`, never both
/// (`LeadRequest::parse` refuses the pair with a 422). A derived object cannot say so,
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

/// The document, built once per call (cheap; `/openapi.json` is not hot).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
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

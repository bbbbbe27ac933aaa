//! The handler steps every synced entity shares (contacts, leads, and whatever comes
//! next): the 201/200/202 answer of a find-or-create, one record, and a keyset page.
//! An entity's controller parses its own input and filter, then answers through here,
//! so the HTTP contract of those steps is written once.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use actix_web::http::header;
use actix_web::HttpResponse;
use chrono::{NaiveDateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{ContentBuilder, Header, Ref, RefOr, Response, ResponseBuilder};
use utoipa::ToSchema;

use super::extract::{flag_schema, page_params, paginate, query_flag};
use crate::domain::{present_name, FieldError, Region, SyncStatus};
use crate::error::ApiError;
use crate::repositories::{SyncRow, Window};
use crate::services::Saved;

/// An entity's response body and what the shared steps need to know about its rows.
pub trait EntityBody: Serialize + From<Self::Row> {
    /// The repository row the body is made from.
    type Row;
    /// The collection's path; one record lives at `{COLLECTION}/{id}`.
    const COLLECTION: &'static str;
    /// amosync's id of a row (the `Location` and the page cursor).
    fn id(row: &Self::Row) -> i64;
}

/// What every record's body says of the record itself; an entity's body adds its
/// own fields beside these.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordFields {
    pub id: i64,
    pub amocrm_id: Option<i64>,
    /// `null` when the record has no name in AmoCRM (leads made from chats and
    /// forms often have none); never an empty string.
    pub name: Option<String>,
    /// `pending` until AmoCRM has confirmed the record, then `synced`.
    #[schema(value_type = String)]
    pub sync_status: SyncStatus,
    pub created_at: String,
    pub updated_at: String,
    /// Set when AmoCRM deleted the record (shown only with `include_deleted=true`).
    pub deleted_at: Option<String>,
}

impl RecordFields {
    pub fn of(row: &impl SyncRow) -> Self {
        RecordFields {
            id: row.record_id(),
            amocrm_id: row.amocrm_id(),
            name: present_name(row.name().to_owned()),
            sync_status: row.sync_status(),
            created_at: timestamp(row.created_at()),
            updated_at: timestamp(row.updated_at()),
            deleted_at: row.deleted_at().map(timestamp),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Times in bodies: RFC 3339 in UTC with milliseconds.
pub fn timestamp(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A non-blank text filter, trimmed; blank means no filter.
pub fn text_filter(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// A find-or-create body: parses into its service's input, or a 422 naming every
/// wrong field.
pub trait EntityRequest {
    type Input;
    fn into_input(self, region: Region) -> Result<Self::Input, ApiError>;
}

/// An entity's own list filters (`PagingQuery` holds the shared ones).
pub trait ListQuery {
    /// The repository filter, paging included.
    type Filter;
    /// Collects every wrong field into `errors`.
    fn filter(&self, region: Region, paging: Paging, errors: &mut Vec<FieldError>) -> Self::Filter;
}

/// The query parameters every list shares.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PagingQuery {
    /// 1–500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{0,18}$")]
    cursor: Option<String>,
    /// `true` shows records deleted in AmoCRM.
    #[param(schema_with = flag_schema)]
    include_deleted: Option<String>,
}

/// A list query parsed whole: the entity's filter with its paging, or a 422 naming
/// every wrong field (the entity's own first).
pub fn list_filter<Q: ListQuery>(
    query: &Q,
    paging: &PagingQuery,
    region: Region,
) -> Result<(Q::Filter, Paging), ApiError> {
    let mut paging_errors = Vec::new();
    let paging = Paging::parse(
        paging.limit.as_deref(),
        paging.cursor.as_deref(),
        paging.include_deleted.as_deref(),
        &mut paging_errors,
    );
    let mut errors = Vec::new();
    let filter = query.filter(region, paging, &mut errors);
    errors.append(&mut paging_errors);
    reject(errors)?;
    Ok((filter, paging))
}

/// The paging part of a list query, parsed.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// Rows on a page (1..=500).
    pub limit: i64,
    /// The cursor: rows after this id.
    pub after_id: Option<i64>,
    pub include_deleted: bool,
}

impl Paging {
    /// Collects wrong `limit`, `cursor` or `include_deleted` into `errors`.
    pub fn parse(
        limit: Option<&str>,
        cursor: Option<&str>,
        include_deleted: Option<&str>,
        errors: &mut Vec<FieldError>,
    ) -> Self {
        let (limit, after_id) = page_params(limit, cursor, errors);
        let include_deleted = query_flag("include_deleted", include_deleted, errors);
        Paging {
            limit,
            after_id,
            include_deleted,
        }
    }

    /// How many rows to fetch: one more than a page tells whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The rows a repository reads for this page.
    pub fn window(&self) -> Window {
        Window {
            after_id: self.after_id,
            limit: self.fetch(),
            include_deleted: self.include_deleted,
        }
    }
}

/// A 422 listing every wrong field, or nothing when there is none.
pub fn reject(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// 201 + `Location` when this request created the record in AmoCRM, 200 when it
/// existed, 202 + `Location` when it is stored and queued for AmoCRM.
pub fn saved<B: EntityBody>(saved: Saved<B::Row>) -> HttpResponse {
    let location = |row: &B::Row| format!("{}/{}", B::COLLECTION, B::id(row));
    match saved {
        Saved::Created(row) => HttpResponse::Created()
            .insert_header((header::LOCATION, location(&row)))
            .json(B::from(row)),
        Saved::Found(row) => HttpResponse::Ok().json(B::from(row)),
        Saved::Accepted(row) => HttpResponse::Accepted()
            .insert_header((header::LOCATION, location(&row)))
            .json(B::from(row)),
    }
}

/// The three answers of `saved`, for an operation's `#[utoipa::path(responses(...))]`:
/// described here once, beside the code that gives them.
pub struct SavedAnswers<B>(PhantomData<B>);

impl<B: EntityBody + ToSchema> utoipa::IntoResponses for SavedAnswers<B> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let answer = |description: &str, with_location: bool| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(B::name())))
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", body);
            if with_location {
                let location = Header::new(Object::with_type(Type::String));
                response = response.header("Location", location);
            }
            RefOr::T(response.build())
        };
        BTreeMap::from([
            ("201".to_owned(), answer("Created in AmoCRM", true)),
            (
                "200".to_owned(),
                answer("Already existed (locally or in AmoCRM)", false),
            ),
            (
                "202".to_owned(),
                answer("Stored and queued: AmoCRM did not answer in time", true),
            ),
        ])
    }
}

/// 200 with one record.
pub fn shown<B: EntityBody>(row: B::Row) -> HttpResponse {
    HttpResponse::Ok().json(B::from(row))
}

/// 200 with one page of `rows` (fetched with `Paging::fetch`) and the next cursor.
pub fn listed<B: EntityBody>(rows: Vec<B::Row>, paging: Paging) -> HttpResponse {
    let (rows, next_cursor) = paginate(rows, paging.limit, B::id);
    HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(B::from).collect::<Vec<_>>(),
        next_cursor,
    })
}

/// The three operations of a synced entity (find or create, one, a page), each with
/// its OpenAPI description: written here once, so an entity's controller supplies
/// only its bodies, its filter and its words.
macro_rules! entity_operations {
    (
        service: $service:ident, body: $body:ident($row:ident), tag: $tag:tt,
        create: $create:ident($request:ident) at $collection:tt, $create_summary:tt;
        show: $show:ident at $one:tt, $show_summary:tt, $found:tt, $missing:ident;
        list: $list:ident($query:ident), $list_summary:tt;
    ) => {
        impl crate::controllers::entity::EntityBody for $body {
            type Row = $row;
            const COLLECTION: &'static str = $collection;
            fn id(row: &$row) -> i64 {
                row.id
            }
        }

        #[utoipa::path(
            post, path = $collection, tag = $tag,
            summary = $create_summary,
            request_body = $request,
            responses(
                crate::controllers::entity::SavedAnswers<$body>,
                crate::controllers::problems::JsonBodyErrors,
                crate::controllers::problems::FindOrCreateErrors,
            ),
        )]
        pub async fn $create(
            state: actix_web::web::Data<crate::state::AppState>,
            body: crate::controllers::extract::JsonBody<$request>,
        ) -> Result<actix_web::HttpResponse, crate::error::ApiError> {
            let input = crate::controllers::entity::EntityRequest::into_input(body.0, state.region)?;
            let saved = state.$service.find_or_create(input).await?;
            Ok(crate::controllers::entity::saved::<$body>(saved))
        }

        #[utoipa::path(
            get, path = $one, tag = $tag,
            summary = $show_summary,
            params(
                ("id" = i64, Path, description = "amosync's id"),
                crate::controllers::extract::ShowQuery,
            ),
            responses(
                (status = 200, description = $found, body = $body),
                crate::controllers::problems::$missing,
                crate::controllers::problems::ReadErrors,
            ),
        )]
        pub async fn $show(
            state: actix_web::web::Data<crate::state::AppState>,
            id: actix_web::web::Path<i64>,
            query: actix_web::web::Query<crate::controllers::extract::ShowQuery>,
        ) -> Result<actix_web::HttpResponse, crate::error::ApiError> {
            let include_deleted = query.include_deleted()?;
            let row = state.$service.get(id.into_inner(), include_deleted).await?;
            Ok(crate::controllers::entity::shown::<$body>(row))
        }

        #[utoipa::path(
            get, path = $collection, tag = $tag,
            summary = $list_summary,
            params($query, crate::controllers::entity::PagingQuery),
            responses(
                (status = 200, description = "One page; pass next_cursor back as cursor", body = crate::controllers::entity::Page<$body>),
                crate::controllers::problems::ReadErrors,
            ),
        )]
        pub async fn $list(
            state: actix_web::web::Data<crate::state::AppState>,
            query: actix_web::web::Query<$query>,
            paging: actix_web::web::Query<crate::controllers::entity::PagingQuery>,
        ) -> Result<actix_web::HttpResponse, crate::error::ApiError> {
            let (filter, paging) =
                crate::controllers::entity::list_filter(&*query, &paging, state.region)?;
            let rows = state.$service.list(filter).await?;
            Ok(crate::controllers::entity::listed::<$body>(rows, paging))
        }
    };
}
pub(super) use entity_operations;

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::http::StatusCode;
    use serde_json::{json, Value};

    use super::*;

    struct Row {
        id: i64,
    }

    #[derive(Serialize, utoipa::ToSchema)]
    struct Body {
        id: i64,
    }

    impl From<Row> for Body {
        fn from(row: Row) -> Self {
            Body { id: row.id }
        }
    }

    impl EntityBody for Body {
        type Row = Row;
        const COLLECTION: &'static str = "/api/v1/things";
        fn id(row: &Row) -> i64 {
            row.id
        }
    }

    fn location(response: &HttpResponse) -> Option<&str> {
        response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    async fn json_of(response: HttpResponse) -> Value {
        let bytes = to_bytes(response.into_body()).await.expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[actix_web::test]
    async fn created_and_accepted_point_at_the_record_and_found_does_not() {
        let created = saved::<Body>(Saved::Created(Row { id: 7 }));
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(location(&created), Some("/api/v1/things/7"));
        assert_eq!(json_of(created).await, json!({"id": 7}));

        let found = saved::<Body>(Saved::Found(Row { id: 8 }));
        assert_eq!(found.status(), StatusCode::OK);
        assert_eq!(location(&found), None);

        let accepted = saved::<Body>(Saved::Accepted(Row { id: 9 }));
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        assert_eq!(location(&accepted), Some("/api/v1/things/9"));
    }

    #[test]
    fn the_described_answers_are_the_ones_given() {
        use utoipa::IntoResponses;
        let described = serde_json::to_value(SavedAnswers::<Body>::responses()).expect("json");
        for (status, with_location) in [("201", true), ("200", false), ("202", true)] {
            let answer = &described[status];
            assert_eq!(
                answer["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Body",
                "{status}"
            );
            assert_eq!(
                answer["headers"]["Location"].is_object(),
                with_location,
                "{status}"
            );
        }
        assert_eq!(described.as_object().map(|o| o.len()), Some(3));
    }

    #[actix_web::test]
    async fn a_full_page_carries_the_cursor_to_the_next() {
        let mut errors = Vec::new();
        let paging = Paging::parse(Some("2"), None, None, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(paging.fetch(), 3);
        let rows = (1..=3).map(|id| Row { id }).collect();
        let page = json_of(listed::<Body>(rows, paging)).await;
        assert_eq!(
            page,
            json!({"items": [{"id": 1}, {"id": 2}], "next_cursor": "2"})
        );
    }

    #[actix_web::test]
    async fn the_last_page_has_no_cursor() {
        let mut errors = Vec::new();
        let paging = Paging::parse(Some("5"), Some("10"), Some("true"), &mut errors);
        assert_eq!(paging.after_id, Some(10));
        assert!(paging.include_deleted);
        let page = json_of(listed::<Body>(vec![Row { id: 11 }], paging)).await;
        assert_eq!(page, json!({"items": [{"id": 11}], "next_cursor": null}));
    }

    #[test]
    fn wrong_paging_names_every_field() {
        let mut errors = Vec::new();
        Paging::parse(Some("0"), Some("x"), Some("maybe"), &mut errors);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "cursor", "include_deleted"]);
        assert!(matches!(reject(errors), Err(ApiError::Validation(e)) if e.len() == 3));
        assert!(reject(Vec::new()).is_ok());
    }

    #[test]
    fn a_blank_text_filter_is_no_filter() {
        assert_eq!(text_filter(None), None);
        assert_eq!(text_filter(Some("   ")), None);
        assert_eq!(text_filter(Some(" Иван ")), Some("Иван".to_owned()));
    }
}

//! `GET /api/v1/amocrm/fields` and `GET /api/v1/amocrm/pipelines`: the AmoCRM
//! account's catalogue as amosync last stored it (see `services::CatalogueService`),
//! so clients can name custom fields, pipelines and statuses without AmoCRM access.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::entity::timestamp;
use super::problems::ReadErrors;
use crate::domain::{CatalogueEntity, CustomField, FieldError, FieldOption, Pipeline, Status};
use crate::error::ApiError;
use crate::state::AppState;

/// One option of a select, multiselect or radiobutton field, or one kind of a
/// multitext value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldOptionBody {
    /// AmoCRM's `enum_id`.
    id: i64,
    value: String,
    sort: i64,
    /// Set on some system options (`WORK`, `MOB` of PHONE).
    code: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldBody {
    /// AmoCRM's `field_id`.
    id: i64,
    #[schema(example = "contacts")]
    entity: &'static str,
    name: String,
    /// AmoCRM's type name: text, numeric, checkbox, select, multiselect, multitext,
    /// date, date_time, url, textarea, … (new types are passed on as AmoCRM names them).
    #[serde(rename = "type")]
    #[schema(example = "select")]
    field_type: String,
    /// Only system fields and fields created with one have a code (`PHONE`, `UTM_SOURCE`).
    code: Option<String>,
    sort: i64,
    /// Editable through AmoCRM's API only.
    is_api_only: bool,
    /// The options values are chosen from; empty for free-form types.
    options: Vec<FieldOptionBody>,
}

impl From<CustomField> for FieldBody {
    fn from(f: CustomField) -> Self {
        FieldBody {
            id: f.id,
            entity: f.entity.as_str(),
            name: f.name,
            field_type: f.field_type.as_str().to_owned(),
            code: f.code,
            sort: f.sort,
            is_api_only: f.is_api_only,
            options: f.options.into_iter().map(FieldOptionBody::from).collect(),
        }
    }
}

impl From<FieldOption> for FieldOptionBody {
    fn from(o: FieldOption) -> Self {
        FieldOptionBody {
            id: o.id,
            value: o.value,
            sort: o.sort,
            code: o.code,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldList {
    items: Vec<FieldBody>,
    /// When the fields were last read from AmoCRM (RFC 3339, UTC); null: never yet.
    refreshed_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    /// AmoCRM's `status_id`; 142 (won) and 143 (lost) are in every pipeline.
    id: i64,
    name: String,
    sort: i64,
    color: Option<String>,
    /// The pipeline's "Incoming leads" (unsorted) stage.
    is_incoming: bool,
}

impl From<Status> for StatusBody {
    fn from(s: Status) -> Self {
        StatusBody {
            id: s.id,
            name: s.name,
            sort: s.sort,
            color: s.color,
            is_incoming: s.is_incoming,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PipelineBody {
    /// AmoCRM's `pipeline_id`.
    id: i64,
    name: String,
    sort: i64,
    /// Where a lead without a pipeline lands.
    is_main: bool,
    is_archive: bool,
    statuses: Vec<StatusBody>,
}

impl From<Pipeline> for PipelineBody {
    fn from(p: Pipeline) -> Self {
        PipelineBody {
            id: p.id,
            name: p.name,
            sort: p.sort,
            is_main: p.is_main,
            is_archive: p.is_archive,
            statuses: p.statuses.into_iter().map(StatusBody::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PipelineList {
    items: Vec<PipelineBody>,
    /// When the pipelines were last read from AmoCRM (RFC 3339, UTC); null: never yet.
    refreshed_at: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FieldsQuery {
    /// `contacts`, `leads` or `companies`; empty or absent: all three.
    #[param(pattern = "^(contacts|leads|companies)?$")]
    entity: Option<String>,
}

/// The entity a query names; `None` for all of them.
fn entity_of(raw: Option<&str>) -> Result<Option<CatalogueEntity>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(name) => name
            .parse()
            .map(Some)
            .map_err(|e: crate::domain::UnknownEntity| {
                ApiError::Validation(vec![FieldError::new("entity", e.to_string())])
            }),
    }
}

#[utoipa::path(
    get, path = "/api/v1/amocrm/fields", tag = "amocrm",
    summary = "The AmoCRM account's custom fields, with types and options",
    params(FieldsQuery),
    responses(
        (status = 200, description = "The stored catalogue's fields, by entity, then AmoCRM's order", body = FieldList),
        ReadErrors,
    ),
)]
pub async fn list_fields(
    state: web::Data<AppState>,
    query: web::Query<FieldsQuery>,
) -> Result<HttpResponse, ApiError> {
    let entity = entity_of(query.entity.as_deref())?;
    let fields = state.catalogue.fields(entity).await?;
    let age = state.catalogue.age().await?;
    Ok(HttpResponse::Ok().json(FieldList {
        items: fields.into_iter().map(FieldBody::from).collect(),
        refreshed_at: age.fields.map(timestamp),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/amocrm/pipelines", tag = "amocrm",
    summary = "The AmoCRM account's lead pipelines with their statuses",
    responses(
        (status = 200, description = "The stored catalogue's pipelines, in AmoCRM's order", body = PipelineList),
        ReadErrors,
    ),
)]
pub async fn list_pipelines(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pipelines = state.catalogue.pipelines().await?;
    let age = state.catalogue.age().await?;
    Ok(HttpResponse::Ok().json(PipelineList {
        items: pipelines.into_iter().map(PipelineBody::from).collect(),
        refreshed_at: age.pipelines.map(timestamp),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entity_is_one_of_three_or_none_and_a_wrong_one_names_the_field() {
        assert_eq!(entity_of(None).ok(), Some(None));
        assert_eq!(entity_of(Some(" ")).ok(), Some(None));
        assert_eq!(
            entity_of(Some("leads")).ok(),
            Some(Some(CatalogueEntity::Leads))
        );
        match entity_of(Some("customers")) {
            Err(ApiError::Validation(errors)) => assert_eq!(errors[0].field, "entity"),
            other => panic!("not a validation error: {other:?}"),
        }
    }
}

//! The account's catalogue as AmoCRM sends it: `GET /api/v4/{entity}/custom_fields`,
//! `GET /api/v4/leads/pipelines` (statuses under each pipeline's `_embedded`) and
//! `GET /api/v4/users`. Lenient like the rest of `wire`: keys AmoCRM adds are
//! ignored, `null` lists are empty, and a field type nobody knew is kept by name.

use serde::Deserialize;

use super::{null_as_default, stringish};
use crate::domain::{CatalogueEntity, CustomField, FieldOption, FieldType, Pipeline, Status, User};

#[derive(Debug, Default, Deserialize)]
pub struct CustomFieldsEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom_fields: Vec<FieldDefinitionDto>,
}

#[derive(Debug, Deserialize)]
pub struct FieldEnumDto {
    pub id: i64,
    #[serde(default, deserialize_with = "stringish")]
    pub value: Option<String>,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default, deserialize_with = "stringish")]
    pub code: Option<String>,
}

/// One field of the catalogue: `{id, name, type, code, sort, is_api_only, enums, …}`.
#[derive(Debug, Deserialize)]
pub struct FieldDefinitionDto {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub field_type: Option<String>,
    /// `null` (or `""`) on user fields.
    #[serde(default, deserialize_with = "stringish")]
    pub code: Option<String>,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub is_api_only: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub enums: Vec<FieldEnumDto>,
}

impl FieldDefinitionDto {
    pub fn into_field(self, entity: CatalogueEntity) -> CustomField {
        let mut options: Vec<FieldOption> = self
            .enums
            .into_iter()
            .map(|e| FieldOption {
                id: e.id,
                value: e.value.unwrap_or_default(),
                sort: e.sort.unwrap_or_default(),
                code: e.code.filter(|c| !c.is_empty()),
            })
            .collect();
        options.sort_by_key(|o| (o.sort, o.id));
        CustomField {
            id: self.id,
            entity,
            name: self.name.unwrap_or_default(),
            field_type: FieldType::from_name(self.field_type.as_deref().unwrap_or_default()),
            code: self.code.filter(|c| !c.is_empty()),
            sort: self.sort.unwrap_or_default(),
            is_api_only: self.is_api_only.unwrap_or_default(),
            options,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StatusesEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub statuses: Vec<StatusDto>,
}

#[derive(Debug, Deserialize)]
pub struct StatusDto {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub color: Option<String>,
    /// 1: the "Incoming leads" stage; 0: a regular one.
    #[serde(rename = "type", default)]
    pub kind: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct PipelineDto {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sort: Option<i64>,
    #[serde(default)]
    pub is_main: Option<bool>,
    #[serde(default)]
    pub is_archive: Option<bool>,
    #[serde(rename = "_embedded", default, deserialize_with = "null_as_default")]
    pub embedded: StatusesEmbedded,
}

impl From<PipelineDto> for Pipeline {
    fn from(dto: PipelineDto) -> Self {
        let mut statuses: Vec<Status> = dto
            .embedded
            .statuses
            .into_iter()
            .map(|s| Status {
                id: s.id,
                name: s.name.unwrap_or_default(),
                sort: s.sort.unwrap_or_default(),
                color: s.color,
                is_incoming: s.kind == Some(1),
            })
            .collect();
        statuses.sort_by_key(|s| (s.sort, s.id));
        Pipeline {
            id: dto.id,
            name: dto.name.unwrap_or_default(),
            sort: dto.sort.unwrap_or_default(),
            is_main: dto.is_main.unwrap_or_default(),
            is_archive: dto.is_archive.unwrap_or_default(),
            statuses,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PipelinesEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub pipelines: Vec<PipelineDto>,
}

/// `{_total_items, _embedded{pipelines}}`: one answer, not paged.
#[derive(Debug, Deserialize)]
pub struct PipelineList {
    #[serde(rename = "_embedded", default, deserialize_with = "null_as_default")]
    pub embedded: PipelinesEmbedded,
}

#[derive(Debug, Default, Deserialize)]
pub struct RightsDto {
    #[serde(default)]
    pub is_admin: Option<bool>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct UserDto {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rights: RightsDto,
}

impl From<UserDto> for User {
    fn from(dto: UserDto) -> Self {
        User {
            id: dto.id,
            name: dto.name.unwrap_or_default(),
            email: dto.email.filter(|e| !e.is_empty()),
            // A user without `rights` is taken as active: AmoCRM only says otherwise.
            is_active: dto.rights.is_active.unwrap_or(true),
            is_admin: dto.rights.is_admin.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct UsersEmbedded {
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<UserDto>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amo::wire::ListPage;
    use serde_json::json;

    #[test]
    fn a_custom_fields_page_parses_types_enums_codes_and_unknown_types() {
        let page: ListPage<CustomFieldsEmbedded> = serde_json::from_value(json!({
            "_page": 1,
            "_links": {"self": {"href": "x"}, "next": {"href": "y"}},
            "_embedded": {"custom_fields": [
                {"id": 123, "name": "Телефон", "type": "multitext", "code": "PHONE", "sort": 4,
                 "is_api_only": false, "group_id": null, "entity_type": "contacts",
                 "is_predefined": true, "required_statuses": [], "remind": null, "account_id": 1,
                 "enums": [{"id": 112, "value": "MOB", "sort": 4}, {"id": 111, "value": "WORK", "sort": 2}]},
                {"id": 124, "name": "Источник", "type": "select", "code": null, "sort": 5,
                 "enums": [{"id": 7, "value": "Реклама", "sort": 1}]},
                {"id": 125, "name": "Roistat", "type": "org_legal_name", "code": "", "enums": null},
            ]}
        }))
        .expect("a catalogue page");
        assert!(page.has_next());
        let fields: Vec<CustomField> = page
            .embedded
            .custom_fields
            .into_iter()
            .map(|f| f.into_field(CatalogueEntity::Contacts))
            .collect();
        assert_eq!(fields[0].field_type, FieldType::Multitext);
        assert_eq!(fields[0].code.as_deref(), Some("PHONE"));
        let kinds: Vec<_> = fields[0]
            .options
            .iter()
            .map(|o| (o.id, o.value.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [(111, "WORK"), (112, "MOB")],
            "options in AmoCRM's order"
        );
        assert_eq!(fields[1].code, None);
        assert_eq!(fields[1].options[0].value, "Реклама");
        assert_eq!(
            fields[2].field_type,
            FieldType::Unknown("org_legal_name".into())
        );
        assert_eq!(fields[2].code, None, "an empty code is no code");
        assert!(fields[2].options.is_empty());
    }

    #[test]
    fn pipelines_carry_their_embedded_statuses_with_the_incoming_stage_marked() {
        let list: PipelineList = serde_json::from_value(json!({
            "_total_items": 1,
            "_embedded": {"pipelines": [{"id": 6950551, "name": "Pipeline", "sort": 1,
                "is_main": true, "is_unsorted_on": true, "is_archive": false, "account_id": 5,
                "_embedded": {"statuses": [
                    {"id": 142, "name": "Won", "sort": 10000, "is_editable": false,
                     "pipeline_id": 6950551, "color": "#CCFF66", "type": 0, "account_id": 5},
                    {"id": 58141803, "name": "Incoming leads", "sort": 10, "is_editable": false,
                     "pipeline_id": 6950551, "color": "#c1c1c1", "type": 1, "account_id": 5}
                ]}}]}
        }))
        .expect("pipelines");
        let pipeline = Pipeline::from(list.embedded.pipelines.into_iter().next().expect("one"));
        assert!(pipeline.is_main && !pipeline.is_archive);
        assert_eq!(pipeline.statuses[0].id, 58141803);
        assert!(pipeline.statuses[0].is_incoming);
        assert!(!pipeline.statuses[1].is_incoming);
        assert_eq!(pipeline.statuses[1].color.as_deref(), Some("#CCFF66"));
    }

    #[test]
    fn users_read_activity_and_admin_rights_from_rights() {
        let page: ListPage<UsersEmbedded> = serde_json::from_value(json!({
            "_total_items": 2, "_page": 1, "_page_count": 1,
            "_embedded": {"users": [
                {"id": 1, "name": "Анна", "email": "a@example.com", "lang": "ru",
                 "rights": {"leads": {"view": "A"}, "is_admin": true, "is_free": false,
                            "is_active": true, "group_id": null, "role_id": null}},
                {"id": 2, "name": "Борис", "email": "", "rights": {"is_active": false}}
            ]}
        }))
        .expect("users");
        let users: Vec<User> = page.embedded.users.into_iter().map(User::from).collect();
        assert!(users[0].is_admin && users[0].is_active);
        assert_eq!(users[0].email.as_deref(), Some("a@example.com"));
        assert!(!users[1].is_admin && !users[1].is_active);
        assert_eq!(users[1].email, None);
    }
}

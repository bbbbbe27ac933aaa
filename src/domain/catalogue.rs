//! The AmoCRM account's catalogue as amosync keeps it: the custom fields of contacts,
//! leads and companies (with their types and options), the lead pipelines with their
//! statuses, and the users. AmoCRM's ids are per account; field codes are stable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whose custom fields: the entities amosync reads a catalogue for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatalogueEntity {
    Contacts,
    Leads,
    Companies,
}

impl CatalogueEntity {
    pub const ALL: [CatalogueEntity; 3] = [
        CatalogueEntity::Contacts,
        CatalogueEntity::Leads,
        CatalogueEntity::Companies,
    ];

    /// The name AmoCRM uses in paths (`/api/v4/{entity}/custom_fields`) and amosync
    /// stores.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogueEntity::Contacts => "contacts",
            CatalogueEntity::Leads => "leads",
            CatalogueEntity::Companies => "companies",
        }
    }
}

impl fmt::Display for CatalogueEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Anything but `contacts`, `leads` or `companies`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be contacts, leads or companies")]
pub struct UnknownEntity;

impl FromStr for CatalogueEntity {
    type Err = UnknownEntity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CatalogueEntity::ALL
            .into_iter()
            .find(|e| e.as_str() == s.trim())
            .ok_or(UnknownEntity)
    }
}

/// A custom field's type. AmoCRM adds types over time (`tracking_data` broke older
/// clients), so a type not listed here is kept by its name instead of failing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    Numeric,
    Checkbox,
    Select,
    Multiselect,
    Multitext,
    Date,
    DateTime,
    Birthday,
    Url,
    Textarea,
    Radiobutton,
    StreetAddress,
    SmartAddress,
    LegalEntity,
    TrackingData,
    Monetary,
    ChainedList,
    File,
    Unknown(String),
}

const NAMED_TYPES: [(&str, FieldType); 19] = [
    ("text", FieldType::Text),
    ("numeric", FieldType::Numeric),
    ("checkbox", FieldType::Checkbox),
    ("select", FieldType::Select),
    ("multiselect", FieldType::Multiselect),
    ("multitext", FieldType::Multitext),
    ("date", FieldType::Date),
    ("date_time", FieldType::DateTime),
    ("birthday", FieldType::Birthday),
    ("url", FieldType::Url),
    ("textarea", FieldType::Textarea),
    ("radiobutton", FieldType::Radiobutton),
    ("streetaddress", FieldType::StreetAddress),
    ("smart_address", FieldType::SmartAddress),
    ("legal_entity", FieldType::LegalEntity),
    ("tracking_data", FieldType::TrackingData),
    ("monetary", FieldType::Monetary),
    ("chained_list", FieldType::ChainedList),
    ("file", FieldType::File),
];

impl FieldType {
    /// The type AmoCRM names `name`; never fails.
    pub fn from_name(name: &str) -> FieldType {
        NAMED_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| FieldType::Unknown(name.to_owned()), |(_, t)| t.clone())
    }

    /// AmoCRM's name of the type.
    pub fn as_str(&self) -> &str {
        match self {
            FieldType::Unknown(name) => name,
            known => NAMED_TYPES
                .iter()
                .find(|(_, t)| t == known)
                .map_or("", |(n, _)| n),
        }
    }

    /// Whether values are chosen from the field's options (`enum_id`).
    pub fn has_options(&self) -> bool {
        matches!(
            self,
            FieldType::Select
                | FieldType::Multiselect
                | FieldType::Radiobutton
                | FieldType::Multitext
                | FieldType::SmartAddress
        )
    }
}

/// One option of a select, multiselect or radiobutton field, or one kind of a
/// multitext value (PHONE's `WORK`, `MOB`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOption {
    pub id: i64,
    pub value: String,
    pub sort: i64,
    /// Set on some system options (multitext kinds, smart address parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomField {
    pub id: i64,
    pub entity: CatalogueEntity,
    pub name: String,
    pub field_type: FieldType,
    /// Only system fields and fields created with one have a code (`PHONE`, `UTM_SOURCE`).
    pub code: Option<String>,
    pub sort: i64,
    /// Editable through the API only, not in AmoCRM's interface.
    pub is_api_only: bool,
    pub options: Vec<FieldOption>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: i64,
    pub name: String,
    pub sort: i64,
    pub color: Option<String>,
    /// The pipeline's "Incoming leads" (unsorted) stage (AmoCRM's `type` 1).
    pub is_incoming: bool,
}

/// Closed-won: the same id in every pipeline.
pub const WON_STATUS_ID: i64 = 142;
/// Closed-lost: the same id in every pipeline.
pub const LOST_STATUS_ID: i64 = 143;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
    pub sort: i64,
    /// The account's main pipeline: where a lead without one lands.
    pub is_main: bool,
    pub is_archive: bool,
    pub statuses: Vec<Status>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    /// Inactive users cannot be made responsible for anything.
    pub is_active: bool,
    pub is_admin: bool,
}

/// Everything one refresh read. `users` is `None` when AmoCRM would not list them
/// (only an admin's token may): the stored users are then kept as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalogue {
    pub fields: Vec<CustomField>,
    pub pipelines: Vec<Pipeline>,
    pub users: Option<Vec<User>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_type_reads_back_as_its_name_and_new_types_are_kept() {
        for (name, kind) in &NAMED_TYPES {
            assert_eq!(FieldType::from_name(name), *kind);
            assert_eq!(kind.as_str(), *name);
        }
        let new = FieldType::from_name("org_legal_name");
        assert_eq!(new, FieldType::Unknown("org_legal_name".into()));
        assert_eq!(new.as_str(), "org_legal_name");
        assert!(!new.has_options());
        assert!(FieldType::Select.has_options() && !FieldType::Date.has_options());
    }

    #[test]
    fn entities_parse_from_their_path_names_only() {
        for entity in CatalogueEntity::ALL {
            assert_eq!(entity.as_str().parse::<CatalogueEntity>(), Ok(entity));
        }
        assert_eq!("customers".parse::<CatalogueEntity>(), Err(UnknownEntity));
        assert_eq!("".parse::<CatalogueEntity>(), Err(UnknownEntity));
    }
}

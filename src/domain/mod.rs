//! Newtypes that parse at the boundary, so services never see raw client strings.

mod catalogue;
mod ids;
mod name;
mod network;
mod phone;
mod sync_status;

pub use catalogue::{
    Catalogue, CatalogueEntity, CustomField, FieldOption, FieldType, Pipeline, Status,
    UnknownEntity, User, LOST_STATUS_ID, WON_STATUS_ID,
};
pub use ids::{AmoId, LocalId};
pub use name::{present_name, EntityName, NameError};
pub use network::is_internal;
pub use phone::{Phone, PhoneError, Region};
pub use sync_status::{SyncStatus, UnknownSyncStatus};

/// One wrong field of a client's input: the field's name as the client sent it
/// (`phone`, `contact.phone`, `limit`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = FieldProblem)]
pub struct FieldError {
    /// The field path, e.g. `phone` or `contact.phone`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

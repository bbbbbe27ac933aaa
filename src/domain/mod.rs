//! Newtypes that parse at the boundary, so services never see raw client strings.

mod name;
mod phone;

pub use name::{present_name, EntityName, NameError};
pub use phone::{Phone, PhoneError, Region};

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

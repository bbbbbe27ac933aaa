//! Creating in batches: the request bodies, and the reply's ids matched back to the
//! items by their request ids.

use reqwest::Method;

use super::matching::match_created;
use super::HttpAmoTransport;
use crate::amo::wire;
use crate::amo::{AmoError, NewAmoLead};
use crate::domain::Phone;

impl HttpAmoTransport {
    /// `POST /api/v4/{contacts|leads}` with `body` (items with request ids `"0"`, `"1"`, …).
    pub(super) async fn create_batch(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        count: usize,
    ) -> Result<Vec<Option<i64>>, AmoError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let created: wire::CreatedList = self
            .send_json(Method::POST, self.url(&["api", "v4", path], &[]), body)
            .await?;
        let items = match path {
            "leads" => created.embedded.leads,
            _ => created.embedded.contacts,
        };
        let replies: Vec<_> = items
            .iter()
            .map(|i| (i.request_id.as_ref(), i.id))
            .collect();
        Ok(match_created(count, &replies))
    }
}

/// Batch items are labelled by their index, which is unique within the request.
pub(super) fn request_ids(count: usize) -> Vec<String> {
    (0..count).map(|i| i.to_string()).collect()
}

pub(super) fn phone_field(phone: &Phone) -> Vec<wire::CustomFieldIn<'_>> {
    vec![wire::CustomFieldIn {
        field_code: wire::PHONE_FIELD_CODE,
        values: vec![wire::FieldValueIn {
            value: phone.as_e164(),
            enum_code: "WORK",
        }],
    }]
}

pub(super) fn lead_body<'a>(lead: &'a NewAmoLead, request_id: &'a str) -> wire::NewLeadIn<'a> {
    wire::NewLeadIn {
        name: &lead.name,
        price: lead.price,
        status_id: lead.status_id,
        pipeline_id: lead.pipeline_id,
        embedded: lead.contact_id.map(|id| wire::LeadEmbeddedIn {
            contacts: vec![wire::ContactLinkIn { id, is_main: true }],
        }),
        request_id,
    }
}

pub(super) fn the_one<T>(created: Vec<Option<T>>, what: &str) -> Result<T, AmoError> {
    created.into_iter().next().flatten().ok_or_else(|| {
        AmoError::InvalidResponse(format!(
            "the reply names no created {what} for our request_id"
        ))
    })
}

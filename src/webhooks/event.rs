//! What one AmoCRM webhook delivery says, once parsed: the account it comes from
//! and the contact, company and lead events it carries, in delivery order.

/// `account[subdomain]` and `account[id]` of the delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub subdomain: Option<String>,
    pub id: Option<i64>,
}

/// The action group an entity came in (`contacts[add]`, `leads[status]`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Add,
    Update,
    Delete,
    Restore,
    /// Leads only: the lead moved to another status or pipeline.
    Status,
    Responsible,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Action> {
        Some(match raw {
            "add" => Action::Add,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "restore" => Action::Restore,
            "status" => Action::Status,
            "responsible" => Action::Responsible,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactEvent {
    pub action: Action,
    pub id: i64,
    pub name: Option<String>,
    /// Values of the custom field whose `code` is `PHONE`, as typed in AmoCRM, in order.
    pub phones: Vec<String>,
    /// AmoCRM ids of the leads linked to this contact (`linked_leads_id`).
    pub linked_lead_ids: Vec<i64>,
    /// Change time, unix seconds: the larger of `updated_at` and `last_modified`.
    pub changed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadEvent {
    pub action: Action,
    pub id: i64,
    pub name: Option<String>,
    pub price: Option<i64>,
    pub status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    /// AmoCRM id of the lead's main contact, when the payload carries one.
    pub main_contact_id: Option<i64>,
    /// Change time, unix seconds: the larger of `updated_at` and `last_modified`.
    pub changed_at: Option<i64>,
}

/// A company: AmoCRM sends it under `contacts[...]` with `[type]=company` (also
/// accepted under `companies[...]`). Kept apart from contacts, never phone-matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyEvent {
    pub action: Action,
    pub id: i64,
    pub name: Option<String>,
    pub responsible_user_id: Option<i64>,
    /// Change time, unix seconds: the larger of `updated_at` and `last_modified`.
    pub changed_at: Option<i64>,
}

/// The kind of an event group amosync does not apply (`message[add]`, `leads[note]`),
/// named from a fixed vocabulary: anything else reads `other`, so a sender cannot make
/// up new kinds (they end as metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKind {
    pub entity: &'static str,
    pub action: &'static str,
}

impl EventKind {
    /// Entities AmoCRM posts webhooks for (§4 of its webhook documentation and
    /// captured deliveries).
    pub const ENTITIES: [&'static str; 10] = [
        "leads",
        "contacts",
        "companies",
        "customers",
        "tasks",
        "unsorted",
        "message",
        "talk",
        "catalogs",
        "notes",
    ];
    /// Their actions, Digital Pipeline events included.
    pub const ACTIONS: [&'static str; 17] = [
        "add",
        "update",
        "delete",
        "restore",
        "status",
        "responsible",
        "note",
        "call_in",
        "call_out",
        "mail_in",
        "mail_out",
        "chat",
        "site_visit",
        "sms_in",
        "sms_out",
        "accept",
        "decline",
    ];

    pub fn of(entity: &str, action: &str) -> EventKind {
        let known = |names: &[&'static str], raw: &str| {
            names
                .iter()
                .copied()
                .find(|name| *name == raw)
                .unwrap_or("other")
        };
        EventKind {
            entity: known(&Self::ENTITIES, entity),
            action: known(&Self::ACTIONS, action),
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.entity, self.action)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub account: Account,
    pub contacts: Vec<ContactEvent>,
    pub companies: Vec<CompanyEvent>,
    pub leads: Vec<LeadEvent>,
    /// Entity items that could not be used (no numeric id, unknown action): counted, not fatal.
    pub skipped: usize,
    /// One entry per item of a group amosync does not apply (notes, chats, tasks,
    /// unsorted, Digital Pipeline events): acknowledged and counted, nothing else.
    pub ignored: Vec<EventKind>,
}

/// Why a body is not a webhook delivery at all (answered with 400, or 415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("unsupported content type `{0}`; AmoCRM sends application/x-www-form-urlencoded")]
    UnsupportedContentType(String),
    #[error("malformed body: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn kinds_outside_the_vocabulary_read_other_so_labels_stay_bounded() {
        assert_eq!(EventKind::of("leads", "note").to_string(), "leads[note]");
        assert_eq!(EventKind::of("message", "add").to_string(), "message[add]");
        assert_eq!(
            EventKind::of("leads", "drop table").to_string(),
            "leads[other]"
        );
        assert_eq!(
            EventKind::of("x".repeat(99).as_str(), "add").to_string(),
            "other[add]"
        );
    }
}

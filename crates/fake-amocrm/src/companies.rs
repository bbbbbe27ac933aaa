//! Companies and notes: what a user does in AmoCRM's interface that fires
//! `*_company` and `note_*` webhooks. AmoCRM sends company events under the
//! `contacts` key with `[type]=company`, and notes nested twice
//! (`leads[note][0][note][…]`), so the emitter does too.

use crate::events::{Action, Event};
use crate::payload;
use crate::records::{now, Company};
use crate::state::State;

/// What a note is attached to, with AmoCRM's numeric `element_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteTarget {
    Contact(i64),
    Lead(i64),
}

impl State {
    /// Creates a company, firing `add_company`.
    pub fn create_company(&mut self, name: String) -> i64 {
        let id = 3_000_001 + self.companies.len() as i64;
        let at = now();
        self.companies.push(Company {
            id,
            name,
            created_at: at,
            updated_at: at,
            deleted: false,
        });
        self.notify_company(Action::Add, id);
        id
    }

    /// Renames a live company, firing `update_company`; `false` when there is none.
    pub fn rename_company(&mut self, id: i64, name: String) -> bool {
        let Some(company) = self.companies.iter_mut().find(|c| c.id == id && !c.deleted) else {
            return false;
        };
        company.name = name;
        company.updated_at = now().max(company.updated_at + 1);
        self.notify_company(Action::Update, id);
        true
    }

    /// Deletes or restores a company; `false` when it is not in the opposite state.
    pub fn set_company_deleted(&mut self, id: i64, deleted: bool) -> bool {
        let found = self
            .companies
            .iter_mut()
            .find(|c| c.id == id && c.deleted != deleted);
        let Some(company) = found else {
            return false;
        };
        company.deleted = deleted;
        company.updated_at = now().max(company.updated_at + 1);
        let action = if deleted {
            Action::Delete
        } else {
            Action::Restore
        };
        self.notify_company(action, id);
        true
    }

    /// Adds a common note (`note_type` 4) to a live contact or lead, firing
    /// `note_contact` or `note_lead`; `None` when there is no such record.
    pub fn add_note(&mut self, target: NoteTarget, text: &str) -> Option<i64> {
        let (entity, element_id, element_type) = match target {
            NoteTarget::Contact(id) => (self.contact(id).map(|_| "contacts"), id, 1),
            NoteTarget::Lead(id) => (self.lead(id).map(|_| "leads"), id, 2),
        };
        let entity = entity?;
        self.notes += 1;
        let note_id = 7_000_000 + self.notes as i64;
        let fields = payload::note_fields(note_id, element_id, element_type, text, self.account_id);
        self.send(Event::new(entity, Action::Note, fields));
        Some(note_id)
    }

    fn notify_company(&mut self, action: Action, id: i64) {
        let fields = match (action, self.companies.iter().find(|c| c.id == id)) {
            (Action::Delete, _) | (_, None) => vec![
                ("[id]".to_owned(), id.to_string()),
                ("[type]".to_owned(), "company".to_owned()),
            ],
            (_, Some(c)) => payload::company_fields(c, self.account_id),
        };
        self.send(Event::company(action, fields));
    }
}

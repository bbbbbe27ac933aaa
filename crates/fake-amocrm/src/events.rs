//! What a change tells the webhook emitter, and what a delivery attempt leaves behind: plain
//! values, so the state that queues events and the emitter that sends them share no code.

/// Key suffixes (`[id]`, `[custom_fields][0][values][0][value]`, ...) with their values.
pub(crate) type Fields = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Add,
    Update,
    Delete,
    Restore,
    Status,
    Note,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Restore => "restore",
            Action::Status => "status",
            Action::Note => "note",
        }
    }
}

/// One change, with its payload fields taken when it happened.
pub(crate) struct Event {
    /// The body's top-level key (`contacts` for companies too).
    pub entity: &'static str,
    /// The subscription's noun: `contact`, `lead`, `company`.
    noun: &'static str,
    pub action: Action,
    pub fields: Fields,
}

impl Event {
    pub fn new(entity: &'static str, action: Action, fields: Fields) -> Self {
        Event {
            entity,
            noun: entity.trim_end_matches('s'),
            action,
            fields,
        }
    }

    /// A company event: subscribed as `*_company`, sent under `contacts`.
    pub fn company(action: Action, fields: Fields) -> Self {
        Event {
            noun: "company",
            ..Event::new("contacts", action, fields)
        }
    }

    /// The webhook setting that subscribes to it, e.g. `add_contact` or `status_lead`.
    pub fn setting(&self) -> String {
        format!("{}_{}", self.action.as_str(), self.noun)
    }
}

/// One attempt to deliver a webhook body.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub webhook_id: i64,
    pub destination: String,
    /// The form-urlencoded body.
    pub body: String,
    /// 1 for the first attempt, then one more per retry.
    pub attempt: usize,
    /// The reply's status, when one came.
    pub status: Option<u16>,
    /// Why no usable reply came: a timeout or a connection error.
    pub error: Option<String>,
}

impl Delivery {
    /// What AmoCRM counts as delivered: a reply within the timeout, with a 100–299 status.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (100..300).contains(&s))
    }
}

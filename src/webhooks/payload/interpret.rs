//! Reads contact, company and lead events out of a delivery tree, using the api/v2
//! field names AmoCRM's webhooks still carry (`custom_fields`, `last_modified`, ...).

use super::tree::{Key, Node};
use crate::webhooks::{
    Account, Action, CompanyEvent, ContactEvent, Delivery, EventKind, LeadEvent,
};

/// Action groups in the order their events are emitted; within a group, items keep
/// their index order. The tree does not remember which group came first in the body,
/// so a fixed order keeps the result deterministic.
const ACTIONS: [(&str, Action); 6] = [
    ("add", Action::Add),
    ("update", Action::Update),
    ("delete", Action::Delete),
    ("restore", Action::Restore),
    ("status", Action::Status),
    ("responsible", Action::Responsible),
];

pub(super) fn delivery(root: &Node) -> Delivery {
    let mut delivery = Delivery {
        account: account(root.get("account")),
        ..Delivery::default()
    };
    for (key, node) in root.entries() {
        let entity = match key {
            Key::Name(name) => name.as_ref(),
            Key::Index(_) => "",
        };
        match entity {
            "account" => {}
            // Companies come under `contacts` with `[type]=company`.
            "contacts" => {
                for item in events(node, "contacts", &mut delivery, contact_or_company) {
                    match item {
                        Item::Contact(contact) => delivery.contacts.push(contact),
                        Item::Company(company) => delivery.companies.push(company),
                    }
                }
            }
            "companies" => {
                let companies = events(node, "companies", &mut delivery, company);
                delivery.companies.extend(companies);
            }
            "leads" => {
                let leads = events(node, "leads", &mut delivery, lead);
                delivery.leads.extend(leads);
            }
            other => {
                for (action, group) in groups(node) {
                    let kind = EventKind::of(other, action);
                    delivery.ignored.extend(items(group).map(|_| kind));
                }
            }
        }
    }
    delivery
}

fn account(node: Option<&Node>) -> Account {
    let text = |name| node.and_then(|n| n.text(name));
    account_of(text("subdomain"), text("id"))
}

/// The account from the raw values of `account[subdomain]` and `account[id]`.
pub(super) fn account_of(subdomain: Option<&str>, id: Option<&str>) -> Account {
    Account {
        subdomain: subdomain.and_then(non_blank),
        id: id.and_then(positive_id),
    }
}

/// An entity's action groups by name (`message=x`, a bare value, is one nameless group).
fn groups<'n, 'a>(entity: &'n Node<'a>) -> Vec<(&'n str, &'n Node<'a>)> {
    match entity {
        Node::Leaf(_) => vec![("", entity)],
        Node::Map(_) => entity
            .entries()
            .map(|(key, group)| match key {
                Key::Name(name) => (name.as_ref(), group),
                Key::Index(_) => ("", group),
            })
            .collect(),
    }
}

/// A group's items; a bare value counts as one.
fn items<'n, 'a>(group: &'n Node<'a>) -> Box<dyn Iterator<Item = &'n Node<'a>> + 'n> {
    match group {
        Node::Leaf(_) => Box::new(std::iter::once(group)),
        Node::Map(_) => Box::new(group.children()),
    }
}

/// Every item of every known action group of one entity; items without a usable id
/// are counted as skipped, and items of groups this service does not apply (notes,
/// Digital Pipeline events) as ignored, by kind.
fn events<T>(
    entity: &Node,
    name: &str,
    delivery: &mut Delivery,
    parse: impl Fn(Action, &Node) -> Option<T>,
) -> Vec<T> {
    let mut events = Vec::new();
    for (action_name, action) in ACTIONS {
        for item in entity.get(action_name).into_iter().flat_map(Node::children) {
            match parse(action, item) {
                Some(event) => events.push(event),
                None => delivery.skipped += 1,
            }
        }
    }
    for (action, group) in groups(entity) {
        if Action::parse(action).is_none() {
            let kind = EventKind::of(name, action);
            delivery.ignored.extend(items(group).map(|_| kind));
        }
    }
    events
}

enum Item {
    Contact(ContactEvent),
    Company(CompanyEvent),
}

fn contact_or_company(action: Action, item: &Node) -> Option<Item> {
    let is_company = item
        .text("type")
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("company"));
    if is_company {
        company(action, item).map(Item::Company)
    } else {
        contact(action, item).map(Item::Contact)
    }
}

fn contact(action: Action, item: &Node) -> Option<ContactEvent> {
    Some(ContactEvent {
        action,
        id: item.text("id").and_then(positive_id)?,
        name: name(item),
        phones: phones(item.get("custom_fields")),
        linked_lead_ids: linked_lead_ids(item.get("linked_leads_id")),
        changed_at: changed_at(item),
    })
}

fn company(action: Action, item: &Node) -> Option<CompanyEvent> {
    Some(CompanyEvent {
        action,
        id: item.text("id").and_then(positive_id)?,
        name: name(item),
        responsible_user_id: item.text("responsible_user_id").and_then(positive_id),
        changed_at: changed_at(item),
    })
}

fn lead(action: Action, item: &Node) -> Option<LeadEvent> {
    Some(LeadEvent {
        action,
        id: item.text("id").and_then(positive_id)?,
        name: name(item),
        price: item.text("price").and_then(price),
        status_id: item.text("status_id").and_then(integer),
        pipeline_id: item.text("pipeline_id").and_then(integer),
        main_contact_id: main_contact_id(item),
        changed_at: changed_at(item),
    })
}

/// The name as AmoCRM holds it, trimmed: `Some("")` when AmoCRM sent an empty name
/// (chat-made leads), `None` when the event carries no name at all (short forms).
fn name(item: &Node) -> Option<String> {
    item.text("name").map(|name| name.trim().to_owned())
}

/// Values of the `PHONE` custom fields: `[values][m][value]`, or a bare `[values][m]`.
fn phones(custom_fields: Option<&Node>) -> Vec<String> {
    let is_phone = |field: &&Node| {
        field
            .text("code")
            .is_some_and(|code| code.trim().eq_ignore_ascii_case("PHONE"))
    };
    let mut phones = Vec::new();
    for field in custom_fields
        .into_iter()
        .flat_map(Node::children)
        .filter(is_phone)
    {
        let values = match field.get("values") {
            Some(single @ Node::Leaf(_)) => vec![single],
            Some(list) => list.children().collect(),
            None => Vec::new(),
        };
        for value in values {
            let text = match value {
                Node::Leaf(text) => Some(text.as_ref()),
                Node::Map(_) => value.text("value"),
            };
            phones.extend(text.and_then(non_blank));
        }
    }
    phones
}

/// `linked_leads_id[<lead id>][ID]=<lead id>`, or a plain list `linked_leads_id[k]=<lead id>`.
fn linked_lead_ids(linked: Option<&Node>) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    let mut candidates: Vec<Option<i64>> = Vec::new();
    match linked {
        Some(Node::Leaf(text)) => candidates.push(positive_id(text)),
        Some(list) => {
            for (key, entry) in list.entries() {
                candidates.push(match entry {
                    Node::Leaf(text) => positive_id(text),
                    Node::Map(_) => entry
                        .text("ID")
                        .or_else(|| entry.text("id"))
                        .and_then(positive_id)
                        .or_else(|| match key {
                            Key::Index(index) => i64::try_from(*index).ok().filter(|&id| id > 0),
                            Key::Name(_) => None,
                        }),
                });
            }
        }
        None => {}
    }
    for id in candidates.into_iter().flatten() {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn main_contact_id(lead: &Node) -> Option<i64> {
    lead.text("main_contact_id")
        .and_then(positive_id)
        .or_else(|| lead.text("contact_id").and_then(positive_id))
        .or_else(|| lead.get("contacts").and_then(main_of))
        .or_else(|| {
            lead.get("_embedded")
                .and_then(|embedded| embedded.get("contacts"))
                .and_then(main_of)
        })
}

/// The contact marked `is_main`, else the first one with an id.
fn main_of(contacts: &Node) -> Option<i64> {
    let mut first = None;
    for contact in contacts.children() {
        let id = match contact {
            Node::Leaf(text) => positive_id(text),
            Node::Map(_) => contact.text("id").and_then(positive_id),
        };
        let Some(id) = id else { continue };
        if contact.text("is_main").is_some_and(truthy) {
            return Some(id);
        }
        first = first.or(Some(id));
    }
    first
}

fn changed_at(item: &Node) -> Option<i64> {
    let updated_at = item.text("updated_at").and_then(integer);
    let last_modified = item.text("last_modified").and_then(integer);
    updated_at.max(last_modified)
}

fn non_blank(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn integer(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

fn positive_id(text: &str) -> Option<i64> {
    integer(text).filter(|&id| id > 0)
}

/// Prices come as `"1500"`, sometimes `"1500.50"`; the mirror keeps whole units.
fn price(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.split_once('.') {
        None => integer(text),
        Some((whole, fraction)) => {
            let whole_ok = whole.bytes().any(|b| b.is_ascii_digit());
            let fraction_ok = fraction.bytes().all(|b| b.is_ascii_digit());
            if whole_ok && fraction_ok {
                integer(whole)
            } else {
                None
            }
        }
    }
}

fn truthy(text: &str) -> bool {
    let text = text.trim();
    text == "1" || text.eq_ignore_ascii_case("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_keep_whole_units_and_reject_anything_else() {
        assert_eq!(price("1500"), Some(1500));
        assert_eq!(price(" 1500.50 "), Some(1500));
        assert_eq!(price("1500."), Some(1500));
        assert_eq!(price("-3.9"), Some(-3));
        assert_eq!(price(""), None);
        assert_eq!(price(".5"), None);
        assert_eq!(price("1500,50"), None);
        assert_eq!(price("1.2.3"), None);
        assert_eq!(price("1e3"), None);
        assert_eq!(price("99999999999999999999"), None);
    }

    #[test]
    fn ids_must_be_positive_integers() {
        assert_eq!(positive_id(" 42 "), Some(42));
        assert_eq!(positive_id("0"), None);
        assert_eq!(positive_id("-5"), None);
        assert_eq!(positive_id("4x"), None);
    }

    #[test]
    fn is_main_accepts_one_and_true_only() {
        assert!(truthy("1"));
        assert!(truthy("TRUE"));
        assert!(!truthy("0"));
        assert!(!truthy("false"));
        assert!(!truthy(""));
    }
}

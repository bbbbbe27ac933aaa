//! Generators for the webhook property tests: byte mutations of recorded bodies, and
//! valid deliveries with the events they must parse to, in both body encodings.

use amosync::webhooks::{Account, Action, ContactEvent, Delivery, LeadEvent};
use proptest::prelude::*;

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        any::<u8>(),
        proptest::sample::select(b"[]%&=+{}\":,0".to_vec())
    ];
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
    ]
}

pub fn mutate(body: &mut Vec<u8>, mutation: &Mutation) {
    let position = |at: usize, len: usize| at.checked_rem(len).unwrap_or(0);
    match *mutation {
        Mutation::Flip(at, mask) => {
            let len = body.len();
            if let Some(byte) = body.get_mut(position(at, len)) {
                *byte ^= mask;
            }
        }
        Mutation::Truncate(at) => body.truncate(position(at, body.len() + 1)),
        Mutation::Insert(at, byte) => body.insert(position(at, body.len() + 1), byte),
    }
}

/// Action groups in the order the parser emits them.
const ACTIONS: [(&str, Action); 6] = [
    ("add", Action::Add),
    ("update", Action::Update),
    ("delete", Action::Delete),
    ("restore", Action::Restore),
    ("status", Action::Status),
    ("responsible", Action::Responsible),
];

#[derive(Debug, Clone)]
struct GeneratedContact {
    action: usize,
    id: i64,
    name: String,
    phones: Vec<String>,
    bare_phone_values: bool,
    linked: Vec<i64>,
    updated_at: Option<i64>,
    last_modified: Option<i64>,
}

#[derive(Debug, Clone)]
struct GeneratedLead {
    action: usize,
    id: i64,
    name: String,
    price: Option<(i64, Option<u8>)>,
    status_id: i64,
    pipeline_id: i64,
    main_contact_id: Option<i64>,
    last_modified: i64,
}

#[derive(Debug, Clone)]
pub struct GeneratedDelivery {
    subdomain: String,
    account_id: i64,
    contacts: Vec<GeneratedContact>,
    leads: Vec<GeneratedLead>,
    raw_brackets: bool,
}

fn name() -> impl Strategy<Value = String> {
    "[ a-zA-Zа-яА-ЯёЁ0-9&=\\[\\]%+#;.]{0,24}"
}

pub fn generated_delivery() -> impl Strategy<Value = GeneratedDelivery> {
    let id = 1..=i64::MAX;
    let time = proptest::option::of(0..2_000_000_000i64);
    let contact = (
        0..ACTIONS.len(),
        id.clone(),
        name(),
        proptest::collection::vec("[ +0-9()-]{0,16}", 0..4),
        any::<bool>(),
        proptest::collection::vec(1..=i64::MAX, 0..4),
        time.clone(),
        time,
    )
        .prop_map(
            |(action, id, name, phones, bare_phone_values, linked, updated_at, last_modified)| {
                GeneratedContact {
                    action,
                    id,
                    name,
                    phones,
                    bare_phone_values,
                    linked,
                    updated_at,
                    last_modified,
                }
            },
        );
    let lead = (
        0..ACTIONS.len(),
        id.clone(),
        name(),
        proptest::option::of((0..1_000_000_000i64, proptest::option::of(0u8..100))),
        1..=i64::MAX,
        1..=i64::MAX,
        proptest::option::of(id),
        0..2_000_000_000i64,
    )
        .prop_map(
            |(action, id, name, price, status_id, pipeline_id, main_contact_id, last_modified)| {
                GeneratedLead {
                    action,
                    id,
                    name,
                    price,
                    status_id,
                    pipeline_id,
                    main_contact_id,
                    last_modified,
                }
            },
        );
    (
        "[a-z0-9-]{1,20}",
        1..=i64::MAX,
        proptest::collection::vec(contact, 0..5),
        proptest::collection::vec(lead, 0..5),
        any::<bool>(),
    )
        .prop_map(
            |(subdomain, account_id, contacts, leads, raw_brackets)| GeneratedDelivery {
                subdomain,
                account_id,
                contacts,
                leads,
                raw_brackets,
            },
        )
}

fn non_blank(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|text| !text.is_empty())
}

fn price_text(price: Option<(i64, Option<u8>)>) -> String {
    match price {
        None => String::new(),
        Some((whole, None)) => whole.to_string(),
        Some((whole, Some(cents))) => format!("{whole}.{cents:02}"),
    }
}

impl GeneratedDelivery {
    pub fn expected(&self) -> Delivery {
        let mut contacts: Vec<_> = self.contacts.iter().collect();
        contacts.sort_by_key(|contact| contact.action);
        let mut leads: Vec<_> = self.leads.iter().collect();
        leads.sort_by_key(|lead| lead.action);
        Delivery {
            account: Account {
                subdomain: Some(self.subdomain.clone()),
                id: Some(self.account_id),
            },
            contacts: contacts
                .into_iter()
                .map(|c| {
                    let mut linked = c.linked.clone();
                    linked.sort_unstable();
                    linked.dedup();
                    ContactEvent {
                        action: ACTIONS[c.action].1,
                        id: c.id,
                        name: Some(c.name.trim().to_owned()),
                        phones: c.phones.iter().filter_map(|p| non_blank(p)).collect(),
                        linked_lead_ids: linked,
                        changed_at: c.updated_at.max(c.last_modified),
                    }
                })
                .collect(),
            leads: leads
                .into_iter()
                .map(|l| LeadEvent {
                    action: ACTIONS[l.action].1,
                    id: l.id,
                    name: Some(l.name.trim().to_owned()),
                    price: l.price.map(|(whole, _)| whole),
                    status_id: Some(l.status_id),
                    pipeline_id: Some(l.pipeline_id),
                    main_contact_id: l.main_contact_id,
                    changed_at: Some(l.last_modified),
                })
                .collect(),
            ..Delivery::default()
        }
    }

    /// The body as PHP's `http_build_query` would write it, items interleaved across groups.
    pub fn form_body(&self) -> String {
        let mut pairs: Vec<(String, String)> = vec![
            ("account[subdomain]".into(), self.subdomain.clone()),
            ("account[id]".into(), self.account_id.to_string()),
        ];
        let mut next = [0usize; ACTIONS.len()];
        for c in &self.contacts {
            let p = format!("contacts[{}][{}]", ACTIONS[c.action].0, next[c.action]);
            next[c.action] += 1;
            pairs.push((format!("{p}[id]"), c.id.to_string()));
            pairs.push((format!("{p}[name]"), c.name.clone()));
            pairs.push((format!("{p}[custom_fields][0][code]"), "EMAIL".into()));
            pairs.push((
                format!("{p}[custom_fields][0][values][0][value]"),
                "a@example.com".into(),
            ));
            pairs.push((format!("{p}[custom_fields][1][code]"), "PHONE".into()));
            for (m, phone) in c.phones.iter().enumerate() {
                let key = if c.bare_phone_values {
                    format!("{p}[custom_fields][1][values][{m}]")
                } else {
                    format!("{p}[custom_fields][1][values][{m}][value]")
                };
                pairs.push((key, phone.clone()));
            }
            for lead_id in &c.linked {
                pairs.push((
                    format!("{p}[linked_leads_id][{lead_id}][ID]"),
                    lead_id.to_string(),
                ));
            }
            if let Some(at) = c.updated_at {
                pairs.push((format!("{p}[updated_at]"), at.to_string()));
            }
            if let Some(at) = c.last_modified {
                pairs.push((format!("{p}[last_modified]"), at.to_string()));
            }
        }
        let mut next = [0usize; ACTIONS.len()];
        for l in &self.leads {
            let p = format!("leads[{}][{}]", ACTIONS[l.action].0, next[l.action]);
            next[l.action] += 1;
            pairs.push((format!("{p}[id]"), l.id.to_string()));
            pairs.push((format!("{p}[name]"), l.name.clone()));
            pairs.push((format!("{p}[price]"), price_text(l.price)));
            pairs.push((format!("{p}[status_id]"), l.status_id.to_string()));
            pairs.push((format!("{p}[pipeline_id]"), l.pipeline_id.to_string()));
            if let Some(id) = l.main_contact_id {
                pairs.push((format!("{p}[main_contact_id]"), id.to_string()));
            }
            pairs.push((format!("{p}[last_modified]"), l.last_modified.to_string()));
        }
        pairs
            .iter()
            .map(|(key, value)| {
                format!(
                    "{}={}",
                    form_encode(key, self.raw_brackets),
                    form_encode(value, false)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The same delivery as JSON with real arrays and numbers.
    pub fn json_body(&self) -> String {
        use serde_json::{json, Map, Value};
        let mut contacts: Map<String, Value> = Map::new();
        for c in &self.contacts {
            let values: Vec<Value> = c
                .phones
                .iter()
                .map(|phone| match c.bare_phone_values {
                    true => json!(phone),
                    false => json!({ "value": phone }),
                })
                .collect();
            // Keyed by lead id, as the form layout is, so both encodings expect one order.
            let linked: Map<String, Value> = c
                .linked
                .iter()
                .map(|id| (id.to_string(), json!({ "ID": id.to_string() })))
                .collect();
            let item = json!({
                "id": c.id,
                "name": c.name,
                "custom_fields": [
                    { "code": "EMAIL", "values": [{ "value": "a@example.com" }] },
                    { "code": "PHONE", "values": values },
                ],
                "linked_leads_id": linked,
                "updated_at": c.updated_at,
                "last_modified": c.last_modified,
            });
            push(&mut contacts, ACTIONS[c.action].0, item);
        }
        let mut leads: Map<String, Value> = Map::new();
        for l in &self.leads {
            let item = json!({
                "id": l.id,
                "name": l.name,
                "price": price_text(l.price),
                "status_id": l.status_id,
                "pipeline_id": l.pipeline_id,
                "main_contact_id": l.main_contact_id,
                "last_modified": l.last_modified,
            });
            push(&mut leads, ACTIONS[l.action].0, item);
        }
        json!({
            "account": { "subdomain": self.subdomain, "id": self.account_id.to_string() },
            "contacts": contacts,
            "leads": leads,
        })
        .to_string()
    }
}

fn push(
    groups: &mut serde_json::Map<String, serde_json::Value>,
    action: &str,
    item: serde_json::Value,
) {
    let group = groups
        .entry(action)
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let serde_json::Value::Array(items) = group {
        items.push(item);
    }
}

/// Percent-encodes like PHP's `urlencode`; written here rather than borrowed from the
/// decoder's crate so the round trip checks the parser against an independent encoder.
fn form_encode(text: &str, raw_brackets: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            b'[' | b']' if raw_brackets => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

//! Webhook bodies in the api/v2 layout AmoCRM still sends for CRM events.
//!
//! The body is form-urlencoded with PHP-style bracket keys, `{entity}[{action}][{i}][{field}]`;
//! every value is a string. Fields keep their old names (`date_create`, `last_modified`,
//! `custom_fields[j][values][m][enum]` holding the numeric enum id, `linked_leads_id`), next to
//! the newer `created_at`/`updated_at`. A delete carries only the id. Companies come under
//! `contacts` with `[type]=company`, notes nested twice, date fields as a bare `[values][0]`,
//! `[code]` only on fields that have one. One body may hold several entities and groups; the
//! account keys close it.

use crate::events::{Event, Fields};
use crate::records::{
    Company, Contact, Lead, CLOSED_DATE_FIELD_ID, LEAD_COMMENT_FIELD_ID, NOTE_FIELD_ID,
    PHONE_ENUMS, PHONE_FIELD_ID, RESPONSIBLE_USER_ID,
};

fn push(fields: &mut Fields, key: &str, value: impl ToString) {
    fields.push((key.to_owned(), value.to_string()));
}

/// The keys both entities share, in the order AmoCRM sends them.
fn common(fields: &mut Fields, id: i64, name: &str, created: i64, updated: i64, account: i64) {
    push(fields, "[id]", id);
    push(fields, "[name]", name);
    push(fields, "[responsible_user_id]", RESPONSIBLE_USER_ID);
    push(fields, "[date_create]", created);
    push(fields, "[last_modified]", updated);
    push(fields, "[created_user_id]", RESPONSIBLE_USER_ID);
    push(fields, "[modified_user_id]", RESPONSIBLE_USER_ID);
    push(fields, "[created_at]", created);
    push(fields, "[updated_at]", updated);
    push(fields, "[account_id]", account);
}

/// A new field list that starts with the common keys; `times` is (created, updated).
fn headed(id: i64, name: &str, (created, updated): (i64, i64), account: i64) -> Fields {
    let mut fields = Fields::new();
    common(&mut fields, id, name, created, updated, account);
    fields
}

/// One custom field; `values` pairs a value with its enum id, if the field has enums.
fn custom_field(
    fields: &mut Fields,
    j: usize,
    (id, name, code): (i64, &str, Option<&str>),
    values: &[(&str, Option<i64>)],
) {
    let at = format!("[custom_fields][{j}]");
    push(fields, &format!("{at}[id]"), id);
    push(fields, &format!("{at}[name]"), name);
    if let Some(code) = code {
        push(fields, &format!("{at}[code]"), code);
    }
    for (m, (value, enum_id)) in values.iter().enumerate() {
        push(fields, &format!("{at}[values][{m}][value]"), value);
        if let Some(enum_id) = enum_id {
            push(fields, &format!("{at}[values][{m}][enum]"), enum_id);
        }
    }
}

pub(crate) fn contact_fields(c: &Contact, lead_ids: &[i64], account_id: i64) -> Fields {
    let mut fields = headed(c.id, &c.name, (c.created_at, c.updated_at), account_id);
    push(&mut fields, "[group_id]", 0);
    push(&mut fields, "[type]", "contact");
    let mut j = 0;
    if !c.phones.is_empty() {
        let values: Vec<(&str, Option<i64>)> = c
            .phones
            .iter()
            .map(|(v, e)| (v.as_str(), Some(PHONE_ENUMS[*e].1)))
            .collect();
        let field = (PHONE_FIELD_ID, "Телефон", Some("PHONE"));
        custom_field(&mut fields, j, field, &values);
        j += 1;
    }
    if let Some(note) = &c.note {
        let field = (NOTE_FIELD_ID, "Код оплаты", None);
        custom_field(&mut fields, j, field, &[(note, None)]);
    }
    for id in lead_ids {
        push(&mut fields, &format!("[linked_leads_id][{id}][ID]"), id);
    }
    fields
}

pub(crate) fn company_fields(c: &Company, account_id: i64) -> Fields {
    let mut fields = headed(c.id, &c.name, (c.created_at, c.updated_at), account_id);
    push(&mut fields, "[type]", "company");
    fields
}

/// A note, nested twice as AmoCRM sends it: `{entity}[note][i][note][…]`, with the
/// numeric `note_type` (4: a common note) and `element_type` (1 contact, 2 lead).
pub(crate) fn note_fields(
    id: i64,
    element_id: i64,
    element_type: i64,
    text: &str,
    account_id: i64,
) -> Fields {
    let mut fields = Fields::new();
    push(&mut fields, "[note][id]", id);
    push(&mut fields, "[note][element_id]", element_id);
    push(&mut fields, "[note][element_type]", element_type);
    push(&mut fields, "[note][note_type]", 4);
    push(&mut fields, "[note][text]", text);
    push(
        &mut fields,
        "[note][responsible_user_id]",
        RESPONSIBLE_USER_ID,
    );
    push(&mut fields, "[note][created_user_id]", RESPONSIBLE_USER_ID);
    push(&mut fields, "[note][account_id]", account_id);
    fields
}

/// `old` is the previous (status, pipeline) pair, sent with status events.
pub(crate) fn lead_fields(l: &Lead, old: Option<(i64, i64)>, account_id: i64) -> Fields {
    let mut fields = Fields::new();
    push(&mut fields, "[id]", l.id);
    push(&mut fields, "[name]", &l.name);
    push(&mut fields, "[status_id]", l.status_id);
    // An empty price arrives as an empty string.
    let price = l.price.map(|p| p.to_string()).unwrap_or_default();
    push(&mut fields, "[price]", price);
    push(&mut fields, "[pipeline_id]", l.pipeline_id);
    if let Some((status, pipeline)) = old {
        push(&mut fields, "[old_status_id]", status);
        push(&mut fields, "[old_pipeline_id]", pipeline);
    }
    let mut rest = Fields::new();
    common(
        &mut rest,
        l.id,
        &l.name,
        l.created_at,
        l.updated_at,
        account_id,
    );
    fields.extend(rest.into_iter().skip(2));
    let mut j = 0;
    if let Some(comment) = &l.comment {
        let field = (LEAD_COMMENT_FIELD_ID, "Комментарий", None);
        custom_field(&mut fields, j, field, &[(comment, None)]);
        j += 1;
    }
    // Date fields come bare: `[values][0]=<unix>`, without a `[value]` level.
    if let Some(closed_at) = l.closed_at {
        let at = format!("[custom_fields][{j}]");
        push(&mut fields, &format!("{at}[id]"), CLOSED_DATE_FIELD_ID);
        push(&mut fields, &format!("{at}[name]"), "Дата закрытия");
        push(&mut fields, &format!("{at}[values][0]"), closed_at);
    }
    fields
}

/// One delivery body: the events grouped by entity and action in the order they happened,
/// numbered from 0 within each group, then the account keys.
pub(crate) fn form_body(events: &[&Event], subdomain: &str, account_id: i64) -> String {
    let mut groups: Vec<(&str, &str, Vec<&Event>)> = Vec::new();
    for event in events {
        let (entity, action) = (event.entity, event.action.as_str());
        match groups
            .iter_mut()
            .find(|(e, a, _)| *e == entity && *a == action)
        {
            Some((_, _, members)) => members.push(event),
            None => groups.push((entity, action, vec![event])),
        }
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (entity, action, members) in groups {
        for (i, event) in members.iter().enumerate() {
            for (suffix, value) in &event.fields {
                form.append_pair(&format!("{entity}[{action}][{i}]{suffix}"), value);
            }
        }
    }
    form.append_pair("account[subdomain]", subdomain);
    form.append_pair("account[id]", &account_id.to_string());
    let home = format!("https://{subdomain}.amocrm.ru");
    form.append_pair("account[_links][self]", &home);
    form.finish()
}

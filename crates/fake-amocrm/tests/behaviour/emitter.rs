//! The webhook emitter: v2 form bodies, batching, retries, timeouts and the disable rule.

use std::time::{Duration, Instant};

use fake_amocrm::NoteTarget;

use crate::helpers::*;

const CONTACT_EVENTS: [&str; 3] = ["add_contact", "update_contact", "delete_contact"];

fn contact_keys(pairs: &[(String, String)]) -> Vec<&str> {
    let keys = pairs.iter().map(|(k, _)| k.as_str());
    keys.filter(|k| k.starts_with("contacts[")).collect()
}

fn assert_account(pairs: &[(String, String)]) {
    assert_eq!(field(pairs, "account[subdomain]"), Some("example"));
    assert_eq!(field(pairs, "account[id]"), Some("29000001"));
    let home = field(pairs, "account[_links][self]");
    assert_eq!(home, Some("https://example.amocrm.ru"));
}

#[tokio::test]
async fn contact_changes_arrive_as_v2_form_bodies() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(200).await;
    subscribe(&amo, &hook.url, &CONTACT_EVENTS).await;

    let phone =
        json!([{"field_code": "PHONE", "values": [{"value": "+79161112233", "enum_code": "MOB"}]}]);
    let created = post(
        &amo,
        "/api/v4/contacts",
        json!([{"name": "Вера", "custom_fields_values": phone}]),
    )
    .await;
    let id = json_of(created).await["_embedded"]["contacts"][0]["id"]
        .as_i64()
        .expect("id");
    let add = &hook.wait_for(1).await[0];
    assert_eq!(add.content_type, "application/x-www-form-urlencoded");
    let pairs = form(&add.body);
    let at = |key: &str| field(&pairs, &format!("contacts[add][0][{key}]")).map(str::to_owned);
    assert_eq!(at("id"), Some(id.to_string()));
    assert_eq!(
        (at("name").as_deref(), at("type").as_deref()),
        (Some("Вера"), Some("contact"))
    );
    assert_eq!(at("account_id").as_deref(), Some("29000001"));
    for key in [
        "responsible_user_id",
        "date_create",
        "last_modified",
        "created_at",
        "updated_at",
    ] {
        let value = at(key).unwrap_or_else(|| panic!("{key} in {pairs:?}"));
        assert!(value.parse::<i64>().is_ok(), "{key}={value}");
    }
    assert_eq!(at("custom_fields][0][id").as_deref(), Some("111"));
    assert_eq!(at("custom_fields][0][code").as_deref(), Some("PHONE"));
    assert_eq!(at("custom_fields][0][name").as_deref(), Some("Телефон"));
    assert_eq!(
        at("custom_fields][0][values][0][value").as_deref(),
        Some("+79161112233")
    );
    assert_eq!(
        at("custom_fields][0][values][0][enum").as_deref(),
        Some("224"),
        "the enum id"
    );
    assert_account(&pairs);

    let lead = amo.add_lead("Сделка Веры", &[id]);
    assert!(amo.update_contact(id, Some("Вера Л."), None));
    let update = form(&hook.wait_for(2).await[1].body);
    let at = |key: &str| field(&update, &format!("contacts[update][0][{key}]")).map(str::to_owned);
    assert_eq!(at("name").as_deref(), Some("Вера Л."));
    let linked = at(&format!("linked_leads_id][{lead}][ID"));
    assert_eq!(linked, Some(lead.to_string()));
    let (made, changed) = (at("date_create"), at("last_modified"));
    assert!(
        changed > made,
        "last_modified moved on: {made:?} {changed:?}"
    );

    let url = format!("{}/_fake/contacts/{id}", amo.base_url());
    let deleted = reqwest::Client::new()
        .delete(url)
        .send()
        .await
        .expect("admin delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let delete = form(&hook.wait_for(3).await[2].body);
    assert_eq!(contact_keys(&delete), vec!["contacts[delete][0][id]"]);
    assert_eq!(
        field(&delete, "contacts[delete][0][id]"),
        Some(id.to_string().as_str())
    );
    assert_account(&delete);
    assert!(amo
        .deliveries()
        .iter()
        .all(|d| d.succeeded() && d.attempt == 1));
}

#[tokio::test]
async fn a_status_change_sends_update_and_status_groups_with_the_old_status() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(200).await;
    subscribe(&amo, &hook.url, &["update_lead", "status_lead"]).await;
    let lead = amo.add_lead("Заказ", &[]);
    assert!(amo.update_lead_status(lead, 142));

    let pairs = form(&hook.wait_for(1).await[0].body);
    let status = |key: &str| field(&pairs, &format!("leads[status][0][{key}]"));
    assert_eq!(status("id"), Some(lead.to_string().as_str()));
    assert_eq!(
        (status("status_id"), status("old_status_id")),
        (Some("142"), Some("10101"))
    );
    assert_eq!(
        (status("pipeline_id"), status("old_pipeline_id")),
        (Some("2020"), Some("2020"))
    );
    assert_eq!(status("price"), Some(""), "no price is an empty string");
    assert_eq!(field(&pairs, "leads[update][0][status_id]"), Some("142"));
    assert_eq!(field(&pairs, "leads[update][0][old_status_id]"), None);
    assert_account(&pairs);
}

#[tokio::test]
async fn changes_close_together_share_one_delivery_and_seeds_send_nothing() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(200).await;
    subscribe(&amo, &hook.url, &["add_contact"]).await;
    amo.add_contact("Тихий", &[]);
    let (first, second) = (
        amo.create_contact("Раз", &[]),
        amo.create_contact("Два", &[]),
    );

    let pairs = form(&hook.wait_for(1).await[0].body);
    assert_eq!(
        field(&pairs, "contacts[add][0][id]"),
        Some(first.to_string().as_str())
    );
    assert_eq!(
        field(&pairs, "contacts[add][1][id]"),
        Some(second.to_string().as_str())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hook.hits().len(),
        1,
        "one body for both, nothing for the seed"
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_after_the_configured_delays() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(500).await;
    subscribe(&amo, &hook.url, &["add_contact"]).await;
    amo.create_contact("Повтор", &[]);

    let hits = hook.wait_for(3).await;
    assert!(
        hits.iter().all(|h| h.body == hits[0].body),
        "the same body each time"
    );
    let gaps = [hits[1].at - hits[0].at, hits[2].at - hits[1].at];
    assert!(
        gaps[0] >= Duration::from_millis(90) && gaps[1] >= Duration::from_millis(290),
        "{gaps:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.hits().len(), 3, "two retries, then it gives up");
    let attempts: Vec<_> = amo
        .deliveries()
        .iter()
        .map(|d| (d.attempt, d.status))
        .collect();
    assert_eq!(
        attempts,
        vec![(1, Some(500)), (2, Some(500)), (3, Some(500))]
    );

    hook.answer(200);
    amo.create_contact("Успех", &[]);
    hook.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hook.hits().len(), 4, "a success is not retried");
}

#[tokio::test]
async fn a_slow_receiver_times_out_without_slowing_the_api() {
    let amo = FakeAmo::start_with(FakeConfig {
        webhook_timeout: Duration::from_millis(200),
        webhook_retry_delays: vec![],
        ..FakeConfig::default()
    })
    .await;
    let hook = Receiver::start(200).await;
    hook.delay(Duration::from_secs(1));
    subscribe(&amo, &hook.url, &["add_contact"]).await;

    let started = Instant::now();
    let resp = post(&amo, "/api/v4/contacts", json!([{"name": "Быстро"}])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let deliveries = amo.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].status, deliveries[0].error.as_deref()),
        (None, Some("timeout"))
    );
}

#[tokio::test]
async fn a_hook_failing_more_than_the_limit_is_disabled_and_others_keep_receiving() {
    let amo = FakeAmo::start_with(FakeConfig {
        disable_after_failures: 2,
        webhook_retry_delays: vec![],
        ..FakeConfig::default()
    })
    .await;
    let (broken, healthy) = (Receiver::start(500).await, Receiver::start(200).await);
    subscribe(&amo, &broken.url, &["add_contact"]).await;
    subscribe(&amo, &healthy.url, &["add_contact"]).await;

    for n in 1..=4 {
        amo.create_contact(&format!("Клиент {n}"), &[]);
        healthy.wait_for(n).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        broken.hits().len(),
        3,
        "the third failure is more than 2: disabled"
    );
    assert_eq!(amo.disabled_webhooks(), vec![broken.url.clone()]);
    let listed = json_of(get(&amo, "/api/v4/webhooks").await).await;
    let disabled: Vec<_> = listed["_embedded"]["webhooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .map(|w| w["disabled"].clone())
        .collect();
    assert_eq!(disabled, vec![json!(true), json!(false)]);
    assert_eq!(healthy.hits().len(), 4);
}

#[tokio::test]
async fn companies_arrive_under_contacts_with_their_type_and_notes_nested_twice() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(200).await;
    let settings = ["add_company", "delete_company", "note_lead", "add_contact"];
    subscribe(&amo, &hook.url, &settings).await;
    let company = amo.create_company("ООО Ромашка");
    let add = form(&hook.wait_for(1).await[0].body);
    let at = |key: &str| field(&add, &format!("contacts[add][0][{key}]")).map(str::to_owned);
    assert_eq!(at("id"), Some(company.to_string()));
    assert_eq!(
        (at("name").as_deref(), at("type").as_deref()),
        (Some("ООО Ромашка"), Some("company"))
    );
    assert!(add.iter().all(|(k, _)| !k.starts_with("companies")));

    assert!(amo.set_company_deleted(company, true));
    let delete = form(&hook.wait_for(2).await[1].body);
    assert_eq!(
        contact_keys(&delete),
        vec!["contacts[delete][0][id]", "contacts[delete][0][type]"]
    );

    let lead = amo.add_lead("С примечанием", &[]);
    let note = amo
        .add_note(NoteTarget::Lead(lead), "Перезвонить")
        .expect("a live lead");
    let pairs = form(&hook.wait_for(3).await[2].body);
    let at = |key: &str| field(&pairs, &format!("leads[note][0][note][{key}]")).map(str::to_owned);
    assert_eq!(at("id"), Some(note.to_string()));
    assert_eq!(
        (
            at("element_id"),
            at("element_type").as_deref(),
            at("note_type").as_deref()
        ),
        (Some(lead.to_string()), Some("2"), Some("4"))
    );
    assert_eq!(at("text").as_deref(), Some("Перезвонить"));
    assert_account(&pairs);
}

#[tokio::test]
async fn a_closed_leads_date_field_comes_bare_and_only_coded_fields_carry_a_code() {
    let amo = FakeAmo::start().await;
    let hook = Receiver::start(200).await;
    subscribe(&amo, &hook.url, &["update_lead"]).await;
    let lead = amo.add_lead("Выиграна", &[]);
    assert!(amo.update_lead_status(lead, 142));
    let pairs = form(&hook.wait_for(1).await[0].body);
    let at = |key: &str| {
        field(
            &pairs,
            &format!("leads[update][0][custom_fields][0][{key}]"),
        )
    };
    assert_eq!(at("id"), Some("555"));
    let closed = at("values][0").expect("a bare date value");
    assert!(closed.parse::<i64>().is_ok(), "{closed}");
    assert_eq!(at("values][0][value"), None);
    assert_eq!(at("code"), None, "a user field has no code");
}

//! The account's catalogue: custom fields per entity (at most 50 a page, codes only on system
//! fields, options with ids), pipelines with embedded statuses (142/143 in each), and users
//! (403 to a token that is not an admin's).

use crate::helpers::*;

fn rows<'a>(page: &'a Value, key: &str) -> &'a Vec<Value> {
    page["_embedded"][key].as_array().expect("embedded rows")
}

fn field<'a>(page: &'a Value, code: &str) -> &'a Value {
    let found = rows(page, "custom_fields")
        .iter()
        .find(|f| f["code"] == code);
    found.unwrap_or_else(|| panic!("no field {code}"))
}

#[tokio::test]
async fn contact_fields_carry_types_codes_only_on_system_fields_and_phone_enums_with_ids() {
    let amo = FakeAmo::start().await;
    let resp = get(&amo, "/api/v4/contacts/custom_fields").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(content_type(&resp), "application/hal+json");
    let page = json_of(resp).await;
    let phone = field(&page, "PHONE");
    assert_eq!(phone["type"], "multitext");
    assert_eq!(
        phone["id"], 111,
        "the id contacts carry in custom_fields_values"
    );
    let kinds: Vec<(&str, i64)> = phone["enums"]
        .as_array()
        .expect("enums")
        .iter()
        .map(|e| {
            (
                e["value"].as_str().expect("value"),
                e["id"].as_i64().expect("id"),
            )
        })
        .collect();
    assert_eq!(kinds[0], ("WORK", 222));
    assert_eq!(kinds.len(), 6);
    assert_eq!(field(&page, "EMAIL")["type"], "multitext");
    let types: Vec<&str> = rows(&page, "custom_fields")
        .iter()
        .map(|f| f["type"].as_str().expect("type"))
        .collect();
    for kind in ["select", "multiselect", "text", "birthday", "checkbox"] {
        assert!(types.contains(&kind), "no {kind} field in {types:?}");
    }
    let select = rows(&page, "custom_fields")
        .iter()
        .find(|f| f["type"] == "select")
        .expect("a select");
    assert_eq!(select["code"], Value::Null, "a user field has no code");
    assert_eq!(select["enums"][0]["value"], "Реклама");
}

#[tokio::test]
async fn lead_fields_hold_dates_and_tracking_fields_and_company_fields_their_own_phone() {
    let amo = FakeAmo::start().await;
    let leads = json_of(get(&amo, "/api/v4/leads/custom_fields").await).await;
    assert_eq!(field(&leads, "UTM_SOURCE")["type"], "tracking_data");
    let types: Vec<&str> = rows(&leads, "custom_fields")
        .iter()
        .map(|f| f["type"].as_str().expect("type"))
        .collect();
    for kind in ["date", "date_time", "select", "numeric", "url"] {
        assert!(types.contains(&kind), "no {kind} lead field in {types:?}");
    }
    let companies = json_of(get(&amo, "/api/v4/companies/custom_fields").await).await;
    assert_ne!(
        field(&companies, "PHONE")["id"],
        111,
        "a company's PHONE is its own field"
    );
    assert!(rows(&companies, "custom_fields")
        .iter()
        .all(|f| f["entity_type"] == "companies"));
}

#[tokio::test]
async fn custom_fields_come_at_most_50_a_page_and_a_full_page_links_the_next() {
    let amo = FakeAmo::start().await;
    for i in 0..60 {
        amo.add_custom_field("leads", &format!("Поле {i}"), "text");
    }
    let first = json_of(get(&amo, "/api/v4/leads/custom_fields?limit=250").await).await;
    assert_eq!(rows(&first, "custom_fields").len(), 50);
    let next = first["_links"]["next"]["href"]
        .as_str()
        .expect("a next link");
    assert!(
        next.contains("/api/v4/leads/custom_fields?page=2"),
        "{next}"
    );
    let second = json_of(get_url(next).await).await;
    let total = 50 + rows(&second, "custom_fields").len();
    assert!(total > 60, "every field over two pages: {total}");
    assert!(second["_links"]["next"].is_null());
}

#[tokio::test]
async fn an_added_field_reads_back_without_code_and_a_removed_one_is_gone() {
    let amo = FakeAmo::start().await;
    let id = amo.add_custom_field("contacts", "Город", "text");
    let page = json_of(get(&amo, "/api/v4/contacts/custom_fields").await).await;
    let added = rows(&page, "custom_fields").iter().find(|f| f["id"] == id);
    assert_eq!(added.expect("the new field")["code"], Value::Null);
    assert!(amo.remove_custom_field(id));
    let page = json_of(get(&amo, "/api/v4/contacts/custom_fields").await).await;
    assert!(rows(&page, "custom_fields").iter().all(|f| f["id"] != id));
}

#[tokio::test]
async fn pipelines_embed_their_statuses_with_won_lost_and_an_incoming_stage_in_each() {
    let amo = FakeAmo::start().await;
    let resp = get(&amo, "/api/v4/leads/pipelines").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let list = json_of(resp).await;
    assert_eq!(list["_total_items"], 2);
    let pipelines = rows(&list, "pipelines");
    assert_eq!(pipelines.len(), 2);
    assert_eq!(
        pipelines.iter().filter(|p| p["is_main"] == true).count(),
        1,
        "one main pipeline"
    );
    for p in pipelines {
        let statuses = rows(p, "statuses");
        let ids: Vec<i64> = statuses
            .iter()
            .map(|s| s["id"].as_i64().expect("id"))
            .collect();
        assert!(ids.contains(&142) && ids.contains(&143), "{ids:?}");
        assert_eq!(statuses.iter().filter(|s| s["type"] == 1).count(), 1);
        assert!(statuses.iter().all(|s| s["pipeline_id"] == p["id"]));
    }
}

#[tokio::test]
async fn users_list_with_rights_and_a_non_admin_token_gets_403() {
    let amo = FakeAmo::start().await;
    let page = json_of(get(&amo, "/api/v4/users").await).await;
    let users = rows(&page, "users");
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["rights"]["is_active"], true);
    assert_eq!(users[1]["rights"]["is_active"], false);
    amo.forbid_users(true);
    let refused = get(&amo, "/api/v4/users").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let other = get(&amo, "/api/v4/leads/pipelines").await;
    assert_eq!(other.status(), StatusCode::OK, "only users are refused");
}

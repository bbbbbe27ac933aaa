//! Webhook deliveries as AmoCRM posts them, parsed end to end: one test per recorded
//! body shape, the structural errors, and property tests for hostile and generated bodies.

use amosync::webhooks::{
    check_delivery, parse_delivery, Account, Action, CompanyEvent, ContactEvent, Delivery,
    EventKind, LeadEvent, PayloadError,
};
use proptest::prelude::*;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=UTF-8");
const JSON: Option<&str> = Some("application/json");

macro_rules! fixture {
    ($name:literal, $content_type:expr) => {
        (
            $name,
            $content_type,
            include_str!(concat!("fixtures/webhooks/", $name)),
        )
    };
}

/// Every fixture with the content type AmoCRM (or a relay, for JSON) would send it with.
const FIXTURES: [(&str, Option<&str>, &str); 12] = [
    fixture!("contact_add_with_phone_and_email.txt", FORM),
    fixture!("contacts_update_with_leads_add_and_status.txt", FORM),
    fixture!("contacts_delete.txt", FORM),
    fixture!("leads_delete_and_restore.txt", FORM),
    fixture!("lead_status_change.txt", FORM),
    fixture!("percent_encoded_brackets.txt", FORM),
    fixture!("cyrillic_names.txt", FORM),
    fixture!("contact_with_linked_leads.txt", FORM),
    fixture!("companies_and_tasks_only.txt", FORM),
    fixture!("contact_note_and_items_without_ids.txt", FORM),
    fixture!("contact_update_and_lead_status_reencoded.json", JSON),
    fixture!("leads_add_with_json_lists_and_numbers.json", JSON),
];

fn parse_fixture(name: &str) -> Result<Delivery, PayloadError> {
    let (_, content_type, body) = FIXTURES
        .iter()
        .find(|(fixture, _, _)| *fixture == name)
        .unwrap_or_else(|| panic!("no fixture named {name}"));
    parse_delivery(*content_type, body.as_bytes())
}

fn example_account() -> Account {
    Account {
        subdomain: Some("example".into()),
        id: Some(29000001),
    }
}

fn contact(action: Action, id: i64) -> ContactEvent {
    ContactEvent {
        action,
        id,
        name: None,
        phones: Vec::new(),
        linked_lead_ids: Vec::new(),
        changed_at: None,
    }
}

fn lead(action: Action, id: i64) -> LeadEvent {
    LeadEvent {
        action,
        id,
        name: None,
        price: None,
        status_id: None,
        pipeline_id: None,
        main_contact_id: None,
        changed_at: None,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|&value| value.to_owned()).collect()
}

#[test]
fn a_contact_add_yields_its_phones_in_order_and_not_its_email() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![ContactEvent {
            name: Some("John Smith".into()),
            phones: strings(&["+7 (999) 555-11-22", "8 916 000-00-01"]),
            changed_at: Some(1717400000),
            ..contact(Action::Add, 32150001)
        }],
        leads: Vec::new(),
        skipped: 0,
        ..Delivery::default()
    };
    assert_eq!(
        parse_fixture("contact_add_with_phone_and_email.txt"),
        Ok(expected)
    );
}

#[test]
fn one_delivery_can_carry_contact_updates_lead_adds_and_status_changes() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![ContactEvent {
            name: Some("John Smith Jr.".into()),
            phones: strings(&["+79995551122"]),
            linked_lead_ids: vec![18870001],
            changed_at: Some(1717403601),
            ..contact(Action::Update, 32150001)
        }],
        leads: vec![
            LeadEvent {
                name: Some("Website order #1042".into()),
                price: Some(1500),
                status_id: Some(61234501),
                pipeline_id: Some(7100001),
                changed_at: Some(1717403500),
                ..lead(Action::Add, 18870001)
            },
            LeadEvent {
                name: Some("Call back".into()),
                price: Some(1500),
                status_id: Some(61234501),
                pipeline_id: Some(7100001),
                main_contact_id: Some(32150001),
                changed_at: Some(1717403550),
                ..lead(Action::Add, 18870002)
            },
            LeadEvent {
                status_id: Some(61234502),
                pipeline_id: Some(7100001),
                changed_at: Some(1717403590),
                ..lead(Action::Status, 18870000)
            },
        ],
        skipped: 0,
        ..Delivery::default()
    };
    assert_eq!(
        parse_fixture("contacts_update_with_leads_add_and_status.txt"),
        Ok(expected)
    );
}

#[test]
fn a_contacts_delete_carries_only_ids() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![
            contact(Action::Delete, 32150007),
            contact(Action::Delete, 32150008),
        ],
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("contacts_delete.txt"), Ok(expected));
}

#[test]
fn lead_deletes_come_before_restores_and_an_empty_price_is_none() {
    let expected = Delivery {
        account: example_account(),
        leads: vec![
            LeadEvent {
                status_id: Some(143),
                pipeline_id: Some(7100001),
                ..lead(Action::Delete, 18870005)
            },
            LeadEvent {
                name: Some("Returning customer".into()),
                status_id: Some(61234501),
                pipeline_id: Some(7100001),
                changed_at: Some(1717410000),
                ..lead(Action::Restore, 18870003)
            },
        ],
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("leads_delete_and_restore.txt"), Ok(expected));
}

#[test]
fn a_status_change_gives_the_new_status_and_pipeline_after_the_update_sent_with_it() {
    let moved = |action| LeadEvent {
        name: Some("Website order #1042".into()),
        price: Some(1500),
        status_id: Some(142),
        pipeline_id: Some(7100002),
        changed_at: Some(1717490000),
        ..lead(action, 18870001)
    };
    let expected = Delivery {
        account: example_account(),
        leads: vec![moved(Action::Update), moved(Action::Status)],
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("lead_status_change.txt"), Ok(expected));
}

#[test]
fn percent_encoded_brackets_in_keys_parse_like_plain_ones() {
    let expected = Delivery {
        account: example_account(),
        leads: vec![LeadEvent {
            name: Some("Call back & confirm [urgent]".into()),
            price: Some(2000),
            status_id: Some(61234502),
            pipeline_id: Some(7100001),
            main_contact_id: Some(32150001),
            changed_at: Some(1717405000),
            ..lead(Action::Update, 18870002)
        }],
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("percent_encoded_brackets.txt"), Ok(expected));
}

#[test]
fn cyrillic_names_are_decoded_from_percent_encoded_utf8() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![ContactEvent {
            name: Some("Иван Петров".into()),
            phones: strings(&["+7 (912) 345-67-89"]),
            changed_at: Some(1717500000),
            ..contact(Action::Add, 32150010)
        }],
        leads: vec![LeadEvent {
            name: Some("Сделка №1 — поставка".into()),
            price: Some(250000),
            status_id: Some(61234501),
            pipeline_id: Some(7100001),
            main_contact_id: Some(32150010),
            changed_at: Some(1717500010),
            ..lead(Action::Add, 18870010)
        }],
        skipped: 0,
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("cyrillic_names.txt"), Ok(expected));
}

#[test]
fn linked_leads_are_read_from_keyed_and_listed_forms_without_duplicates() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![
            ContactEvent {
                name: Some("John Smith".into()),
                linked_lead_ids: vec![18870001, 18870003],
                changed_at: Some(1717600000),
                ..contact(Action::Update, 32150001)
            },
            ContactEvent {
                name: Some("Jane Doe".into()),
                linked_lead_ids: vec![18870002, 18870005],
                changed_at: Some(1717600100),
                ..contact(Action::Update, 32150002)
            },
        ],
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("contact_with_linked_leads.txt"), Ok(expected));
}

#[test]
fn companies_are_read_and_tasks_are_counted_as_ignored() {
    let expected = Delivery {
        account: example_account(),
        companies: vec![CompanyEvent {
            action: Action::Add,
            id: 41000002,
            name: Some("Acme Ltd".into()),
            responsible_user_id: Some(8370001),
            changed_at: Some(1717700000),
        }],
        ignored: vec![EventKind::of("tasks", "update")],
        ..Delivery::default()
    };
    assert_eq!(parse_fixture("companies_and_tasks_only.txt"), Ok(expected));
}

#[test]
fn unknown_actions_are_ignored_by_kind_and_items_without_a_numeric_id_skipped() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![ContactEvent {
            // Blank in AmoCRM: carried as empty (the API shows `name: null`).
            name: Some(String::new()),
            changed_at: Some(1717800001),
            ..contact(Action::Update, 32150003)
        }],
        leads: Vec::new(),
        skipped: 2,
        ignored: vec![EventKind::of("contacts", "note")],
        ..Delivery::default()
    };
    assert_eq!(
        parse_fixture("contact_note_and_items_without_ids.txt"),
        Ok(expected)
    );
}

#[test]
fn a_form_delivery_re_encoded_as_json_objects_parses_the_same_way() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![ContactEvent {
            name: Some("John Smith".into()),
            phones: strings(&["+79995551122"]),
            linked_lead_ids: vec![18870001],
            changed_at: Some(1717403601),
            ..contact(Action::Update, 32150001)
        }],
        leads: vec![LeadEvent {
            price: Some(1500),
            status_id: Some(142),
            pipeline_id: Some(7100002),
            changed_at: Some(1717490000),
            ..lead(Action::Status, 18870001)
        }],
        skipped: 0,
        ..Delivery::default()
    };
    assert_eq!(
        parse_fixture("contact_update_and_lead_status_reencoded.json"),
        Ok(expected)
    );
}

#[test]
fn json_arrays_numbers_booleans_and_nulls_are_read_like_form_strings() {
    let expected = Delivery {
        account: example_account(),
        contacts: vec![ContactEvent {
            name: Some("Мария".into()),
            phones: strings(&["+7 900 000-00-02"]),
            linked_lead_ids: vec![18870020],
            changed_at: Some(1717900000),
            ..contact(Action::Add, 32150012)
        }],
        leads: vec![LeadEvent {
            name: Some("Вторая сделка".into()),
            price: Some(990),
            status_id: Some(61234501),
            pipeline_id: Some(7100001),
            main_contact_id: Some(32150012),
            changed_at: Some(1717900000),
            ..lead(Action::Add, 18870020)
        }],
        skipped: 1,
        ignored: vec![EventKind::of("tasks", "add")],
        ..Delivery::default()
    };
    assert_eq!(
        parse_fixture("leads_add_with_json_lists_and_numbers.json"),
        Ok(expected)
    );
}

#[test]
fn a_missing_content_type_is_read_as_a_form() {
    let (_, _, body) = FIXTURES[0];
    let without_header = parse_delivery(None, body.as_bytes());
    assert_eq!(without_header, parse_fixture(FIXTURES[0].0));
    assert_eq!(without_header.map(|d| d.contacts.len()), Ok(1));
}

#[test]
fn other_content_types_are_refused_by_name() {
    let (_, _, body) = FIXTURES[0];
    assert_eq!(
        parse_delivery(Some("text/plain; charset=utf-8"), body.as_bytes()),
        Err(PayloadError::UnsupportedContentType("text/plain".into()))
    );
}

#[test]
fn malformed_json_and_non_object_json_are_refused() {
    for body in [
        r#"{"account":{"subdomain":"example""#,
        "[1, 2]",
        r#""contacts""#,
    ] {
        let result = parse_delivery(JSON, body.as_bytes());
        assert!(
            matches!(result, Err(PayloadError::Malformed(_))),
            "{body}: {result:?}"
        );
    }
}

#[test]
fn an_empty_or_blank_body_is_refused_in_either_encoding() {
    for content_type in [FORM, JSON, None] {
        for body in ["", " \r\n\t"] {
            let result = parse_delivery(content_type, body.as_bytes());
            assert!(
                matches!(result, Err(PayloadError::Malformed(_))),
                "{content_type:?} {body:?}: {result:?}"
            );
        }
    }
}

#[test]
fn keys_nested_deeper_than_thirty_two_levels_are_refused() {
    let deepest = format!("contacts{}=1", "[0]".repeat(31));
    assert!(parse_delivery(FORM, deepest.as_bytes()).is_ok());
    for too_deep in [
        format!("contacts{}=1", "[0]".repeat(32)),
        format!("contacts{}=1", "%5B0%5D".repeat(32)),
        format!("a=1&contacts{}", "[]".repeat(100_000)),
    ] {
        let result = parse_delivery(FORM, too_deep.as_bytes());
        assert!(
            matches!(result, Err(PayloadError::Malformed(_))),
            "{result:?}"
        );
    }
    let deep_json = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
    assert!(matches!(
        parse_delivery(JSON, deep_json.as_bytes()),
        Err(PayloadError::Malformed(_))
    ));
}

#[test]
fn a_key_used_both_as_a_value_and_as_a_group_keeps_the_last_like_php() {
    let delivery = parse_delivery(FORM, b"contacts[add]=1&contacts[add][0][id]=5").unwrap();
    assert_eq!(delivery.contacts, vec![contact(Action::Add, 5)]);
    let delivery = parse_delivery(FORM, b"contacts[add][0][id]=5&contacts[add]=1").unwrap();
    assert!(delivery.contacts.is_empty(), "{delivery:?}");
}

#[test]
fn a_body_cut_off_inside_a_key_is_refused() {
    for cut in [
        "contacts[add][0][id]=5&contacts[add][0][",
        "contacts[add][0][id]=5&contacts[add][0][na",
        "leads[status][0][id]=5&leads[status][0][&account[id]=1",
    ] {
        let result = parse_delivery(FORM, cut.as_bytes());
        assert!(
            matches!(&result, Err(PayloadError::Malformed(m)) if m.contains("cut off")),
            "{cut}: {result:?}"
        );
        assert_eq!(
            check_delivery(FORM, cut.as_bytes()).map(|_| ()),
            result.map(|_| ())
        );
    }
}

#[test]
fn too_many_pairs_are_refused() {
    let body = "a=1&".repeat(200_001);
    let result = parse_delivery(FORM, body.as_bytes());
    assert!(
        matches!(result, Err(PayloadError::Malformed(_))),
        "{result:?}"
    );
}

// ---- properties ----------------------------------------------------------------------

#[path = "webhook_payloads/generated.rs"]
mod generated;

use generated::{generated_delivery, mutate, mutation};

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![Just(None), Just(FORM), Just(JSON), Just(Some("text/plain"))]
}

/// Form bodies whose keys are drawn from a few segments, so that repeats, keys that
/// are both a value and a group, `[]`, non-canonical indices and the account keys
/// all come up often.
fn key_soup() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("account"),
        Just("id"),
        Just("subdomain"),
        Just("a"),
        Just("0"),
        Just("07"),
        Just(""),
        Just("%5B"),
    ];
    let key =
        (segment.clone(), proptest::collection::vec(segment, 0..4)).prop_map(|(base, rest)| {
            rest.iter()
                .fold(base.to_owned(), |key, s| format!("{key}[{s}]"))
        });
    let value = prop_oneof![Just(""), Just("1"), Just("+7"), Just("-3"), Just("x%20y")];
    proptest::collection::vec((key, value), 0..12).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// The acknowledgement's check must say what the full parse would: the same error,
/// or the same account.
fn check_agrees(content_type: Option<&str>, body: &[u8]) -> Result<(), TestCaseError> {
    let full = parse_delivery(content_type, body).map(|delivery| delivery.account);
    prop_assert_eq!(
        check_delivery(content_type, body),
        full,
        "{}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(content_type in content_type(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_delivery(content_type, &body);
    }

    #[test]
    fn bracket_heavy_text_never_panics(
        content_type in content_type(),
        body in "[a-z0-9\\[\\]=&%{}\":, ]{0,300}",
    ) {
        let _ = parse_delivery(content_type, body.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in 0..FIXTURES.len(),
        mutations in proptest::collection::vec(mutation(), 1..8),
        swap_content_type in any::<bool>(),
    ) {
        let (_, content_type, body) = FIXTURES[index];
        let mut body = body.as_bytes().to_vec();
        for mutation in &mutations {
            mutate(&mut body, mutation);
        }
        let content_type = match (swap_content_type, content_type) {
            (false, content_type) => content_type,
            (true, ct) if ct == JSON => FORM,
            (true, _) => JSON,
        };
        let _ = parse_delivery(content_type, &body);
    }

    #[test]
    fn the_acknowledgement_check_agrees_with_the_full_parse_on_key_soup(
        content_type in content_type(),
        body in key_soup(),
    ) {
        check_agrees(content_type, body.as_bytes())?;
    }

    #[test]
    fn the_acknowledgement_check_agrees_with_the_full_parse_on_mutated_fixtures(
        index in 0..FIXTURES.len(),
        mutations in proptest::collection::vec(mutation(), 0..8),
    ) {
        let (_, content_type, body) = FIXTURES[index];
        let mut body = body.as_bytes().to_vec();
        for mutation in &mutations {
            mutate(&mut body, mutation);
        }
        check_agrees(content_type, &body)?;
        check_agrees(FORM, &body)?;
    }

    #[test]
    fn a_generated_form_delivery_round_trips_to_its_events(delivery in generated_delivery()) {
        let body = delivery.form_body();
        prop_assert_eq!(parse_delivery(FORM, body.as_bytes()), Ok(delivery.expected()), "{}", body);
    }

    #[test]
    fn a_generated_json_delivery_round_trips_to_its_events(delivery in generated_delivery()) {
        let body = delivery.json_body();
        prop_assert_eq!(parse_delivery(JSON, body.as_bytes()), Ok(delivery.expected()), "{}", body);
    }
}

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use super::*;
use crate::amo::{AmoContact, CreatedWithContact, MockAmoTransport};
use crate::domain::{AmoId, LocalId, SyncStatus};
use crate::repositories::{
    Entity, FactAges, MockContactRepository, MockLeadRepository, MockSyncRowRepository,
};
use crate::services::mirror::authority::tests::{all_facts, auto_with, lacking_one_fact};
use crate::settings::DedupMode;
use mockall::predicate::eq;

fn at() -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .map(|d| d.naive_utc())
        .expect("ts")
}

fn contact(id: i64, phone: &str) -> Contact {
    Contact {
        id,
        amocrm_id: None,
        name: format!("Клиент {id}"),
        phone: Some(phone.into()),
        sync_status: SyncStatus::Pending,
        sync_attempts: 0,
        sync_error: None,
        sync_lease_until: Some(at()),
        amo_updated_at: None,
        deleted_at: None,
        created_at: at(),
        updated_at: at(),
    }
}

fn lead(id: i64, contact_id: Option<i64>) -> Lead {
    Lead {
        id,
        amocrm_id: None,
        name: format!("Сделка {id}"),
        price: Some(100),
        status_id: None,
        pipeline_id: None,
        contact_id,
        contact_amocrm_id: None,
        sync_status: SyncStatus::Pending,
        sync_attempts: 0,
        sync_error: None,
        sync_lease_until: Some(at()),
        amo_updated_at: None,
        deleted_at: None,
        created_at: at(),
        updated_at: at(),
    }
}

fn contact_record(id: i64) -> Record {
    Record::new(Entity::Contact, id)
}

fn lead_record(id: i64) -> Record {
    Record::new(Entity::Lead, id)
}

fn amo_contact(id: i64, phone: &str) -> AmoContact {
    AmoContact {
        id,
        name: "В AmoCRM".into(),
        phones: vec![phone.into()],
        updated_at: None,
    }
}

async fn run(
    amo: MockAmoTransport,
    contacts: MockContactRepository,
    leads: MockLeadRepository,
    round: Round,
) -> RoundReport {
    run_deciding(
        amo,
        contacts,
        leads,
        round,
        MirrorAuthority::fixed(DedupMode::Remote),
    )
    .await
}

async fn run_deciding(
    amo: MockAmoTransport,
    contacts: MockContactRepository,
    leads: MockLeadRepository,
    round: Round,
    authority: MirrorAuthority,
) -> RoundReport {
    let rows = MockSyncRowRepository::new();
    run_recording(amo, contacts, leads, rows, round, authority).await
}

/// A round whose records' bookkeeping (failures, releases) `rows` expects.
async fn run_recording(
    amo: MockAmoTransport,
    contacts: MockContactRepository,
    leads: MockLeadRepository,
    rows: MockSyncRowRepository,
    round: Round,
    authority: MirrorAuthority,
) -> RoundReport {
    let logger = Logger::root(slog::Discard, slog::o!());
    RoundRunner {
        amo: &amo,
        contacts: &contacts,
        leads: &leads,
        rows: &rows,
        settings: SyncSettings::default(),
        authority: &authority,
        lifecycle: None,
        turn: None,
        logger: &logger,
    }
    .run(round)
    .await
}

#[tokio::test]
async fn contacts_missing_from_amocrm_are_created_in_one_request_and_found_ones_are_not() {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone().returning(|phone| {
        Ok(match phone.as_e164() {
            "+79160000002" => vec![amo_contact(500, "+7 916 000-00-02")],
            _ => vec![],
        })
    });
    amo.expect_create_contacts()
        .withf(|batch| {
            let phones: Vec<_> = batch.iter().map(|c| c.phone.as_e164()).collect();
            phones == ["+79160000001", "+79160000003"]
        })
        .times(1)
        .returning(|_| Ok(vec![Some(701), Some(703)]));
    let mut repo = MockContactRepository::new();
    for (id, amocrm_id) in [(1, 701), (2, 500), (3, 703)] {
        repo.expect_finish_sync()
            .withf(move |row, amo, _| (row.get(), amo.get()) == (id, amocrm_id))
            .times(1)
            .returning(move |row, _, _| Ok(contact(row.get(), "+79160000000")));
    }
    let round = Round {
        contacts: (1..=3)
            .map(|id| contact(id, &format!("+7916000000{id}")))
            .collect(),
        leads: vec![],
    };
    run(amo, repo, MockLeadRepository::new(), round).await;
}

/// Lead 8 with its pending contact 9 in one round, and a lead repository that expects
/// the lead synced as AmoCRM's lead 80 linked to contact 90.
fn lead_8_with_pending_contact_9() -> (MockLeadRepository, Round) {
    let mut leads = MockLeadRepository::new();
    leads
        .expect_finish_sync()
        .withf(|id, amo| *id == 8 && amo.id == 80 && amo.main_contact_id == Some(90))
        .times(1)
        .returning(|_, _| Ok(lead(8, Some(9))));
    let round = Round {
        contacts: vec![],
        leads: vec![LeadItem {
            row: lead(8, Some(9)),
            contact: LeadLink::Pending(contact(9, "+79160000009")),
        }],
    };
    (leads, round)
}

/// Lead 8 with its pending contact 9, new to AmoCRM: both go out in one
/// `leads/complex` item. `searches`: contact searches allowed (finding nothing).
async fn lead_with_new_contact(authority: MirrorAuthority, searches: usize) {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone()
        .times(searches)
        .returning(|_| Ok(vec![]));
    amo.expect_find_lead_by_name().never();
    amo.expect_create_contacts().never();
    amo.expect_create_leads_with_contacts()
        .withf(|items| {
            items.len() == 1
                && items[0].0.name == "Сделка 8"
                && items[0].1.phone.as_e164() == "+79160000009"
        })
        .times(1)
        .returning(|_| {
            Ok(vec![Some(CreatedWithContact {
                lead_id: 80,
                contact_id: 90,
            })])
        });
    let mut contacts = MockContactRepository::new();
    // Asked only instead of AmoCRM: it holds nothing but the pending row itself.
    contacts
        .expect_find_by_phone()
        .times(1 - searches)
        .returning(|_| Ok(Some(contact(9, "+79160000009"))));
    contacts
        .expect_finish_sync()
        .with(eq(LocalId::new(9)), eq(AmoId::new(90)), eq("Клиент 9"))
        .times(1)
        .returning(|_, _, _| Ok(contact(9, "+79160000009")));
    let (leads, round) = lead_8_with_pending_contact_9();
    run_deciding(amo, contacts, leads, round, authority).await;
}

#[tokio::test]
async fn a_lead_whose_contact_is_not_in_amocrm_is_created_with_it_by_leads_complex() {
    lead_with_new_contact(MirrorAuthority::fixed(DedupMode::Remote), 1).await;
}

#[tokio::test]
async fn a_lead_whose_pending_contact_amocrm_holds_is_linked_to_it_and_created_on_its_own() {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone()
        .times(1)
        .returning(|_| Ok(vec![amo_contact(90, "+7 916 000-00-09")]));
    amo.expect_find_lead_by_name()
        .with(eq("Сделка 8"))
        .times(1)
        .returning(|_| Ok(vec![]));
    amo.expect_create_leads_with_contacts().never();
    amo.expect_create_leads()
        .withf(|batch| batch.len() == 1 && batch[0].contact_id == Some(90))
        .times(1)
        .returning(|_| Ok(vec![Some(80)]));
    let mut contacts = MockContactRepository::new();
    contacts
        .expect_finish_sync()
        .with(eq(LocalId::new(9)), eq(AmoId::new(90)), eq("В AmoCRM"))
        .times(1)
        .returning(|_, _, _| Ok(contact(9, "+79160000009")));
    let (leads, round) = lead_8_with_pending_contact_9();
    let report = run(amo, contacts, leads, round).await;
    assert!(!report.halted && report.skipped.is_empty());
}

#[tokio::test]
async fn a_failed_search_is_recorded_on_the_record_and_nothing_is_created() {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone()
        .returning(|_| Err(AmoError::Server { status: 502 }));
    amo.expect_create_contacts().never();
    let mut rows = MockSyncRowRepository::new();
    rows.expect_record_failure()
        .withf(|record, _, _, permanent| *record == contact_record(4) && !permanent)
        .times(1)
        .returning(|_, _, _, _| Ok(false));
    let round = Round {
        contacts: vec![contact(4, "+79160000004")],
        leads: vec![],
    };
    let (contacts, leads) = (MockContactRepository::new(), MockLeadRepository::new());
    let remote = MirrorAuthority::fixed(DedupMode::Remote);
    run_recording(amo, contacts, leads, rows, round, remote).await;
}

#[tokio::test]
async fn a_rate_limited_search_halts_the_round_and_the_rest_is_skipped_not_failed() {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone()
        .times(1)
        .returning(|_| Err(AmoError::RateLimited { retry_after: None }));
    amo.expect_create_contacts().never();
    let mut rows = MockSyncRowRepository::new();
    rows.expect_record_failure()
        .withf(|record, _, _, permanent| *record == contact_record(1) && !permanent)
        .times(1)
        .returning(|_, _, _, _| Ok(false));
    let round = Round {
        contacts: (1..=3)
            .map(|id| contact(id, &format!("+7916000000{id}")))
            .collect(),
        leads: vec![],
    };
    let (contacts, leads) = (MockContactRepository::new(), MockLeadRepository::new());
    let remote = MirrorAuthority::fixed(DedupMode::Remote);
    let report = run_recording(amo, contacts, leads, rows, round, remote).await;
    assert!(report.halted);
    assert_eq!(report.skipped, vec![contact_record(2), contact_record(3)]);
}

#[tokio::test]
async fn a_draining_service_starts_no_search_and_hands_every_record_back() {
    let amo = MockAmoTransport::new(); // any AmoCRM call would panic
    let (contacts, leads) = (MockContactRepository::new(), MockLeadRepository::new());
    let lifecycle = Lifecycle::default();
    lifecycle.start_draining();
    let logger = Logger::root(slog::Discard, slog::o!());
    let round = Round {
        contacts: vec![contact(1, "+79160000001")],
        leads: vec![LeadItem {
            row: lead(2, Some(3)),
            contact: LeadLink::Pending(contact(3, "+79160000003")),
        }],
    };
    let authority = MirrorAuthority::fixed(DedupMode::Remote);
    let report = RoundRunner {
        amo: &amo,
        contacts: &contacts,
        leads: &leads,
        rows: &MockSyncRowRepository::new(),
        settings: SyncSettings::default(),
        authority: &authority,
        lifecycle: Some(&lifecycle),
        turn: None,
        logger: &logger,
    }
    .run(round)
    .await;
    let mut skipped = report.skipped;
    skipped.sort_by_key(|record| (record.entity.as_str(), record.id));
    assert_eq!(
        skipped,
        vec![contact_record(1), contact_record(3), lead_record(2)]
    );
    assert!(!report.halted);
}

/// Three new phones in one round; `searches` is how many AmoCRM searches may go
/// out (finding nothing). Either way the three are created in one request.
async fn round_of_new_phones(authority: MirrorAuthority, searches: usize) {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone()
        .times(searches)
        .returning(|_| Ok(vec![]));
    amo.expect_create_contacts()
        .withf(|batch| batch.len() == 3)
        .times(1)
        .returning(|_| Ok(vec![Some(701), Some(702), Some(703)]));
    let mut repo = MockContactRepository::new();
    // Only the mirror is asked when AmoCRM is not: a pending row of its own.
    repo.expect_find_by_phone()
        .times(3 - searches)
        .returning(|phone| {
            let id = phone[phone.len() - 1..].parse().unwrap_or(0);
            Ok(Some(contact(id, phone)))
        });
    repo.expect_finish_sync()
        .times(3)
        .returning(|row, _, _| Ok(contact(row.get(), "+79160000000")));
    let round = Round {
        contacts: (1..=3)
            .map(|id| contact(id, &format!("+7916000000{id}")))
            .collect(),
        leads: vec![],
    };
    run_deciding(amo, repo, MockLeadRepository::new(), round, authority).await;
}

#[tokio::test]
async fn an_authoritative_mirror_sends_new_contacts_straight_to_the_batched_create() {
    round_of_new_phones(auto_with(all_facts()), 0).await;
}

#[tokio::test]
async fn without_an_authoritative_mirror_every_contact_is_searched_first() {
    for ages in lacking_one_fact() {
        round_of_new_phones(auto_with(ages), 3).await;
    }
}

#[tokio::test]
async fn remote_mode_searches_every_contact_and_mirror_mode_none() {
    round_of_new_phones(MirrorAuthority::fixed(DedupMode::Remote), 3).await;
    round_of_new_phones(MirrorAuthority::fixed(DedupMode::Mirror), 0).await;
}

#[tokio::test]
async fn a_phone_the_mirror_already_holds_is_linked_to_that_contact_not_created() {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone().never();
    amo.expect_create_contacts().never();
    let mut repo = MockContactRepository::new();
    repo.expect_find_by_phone().returning(|_| {
        Ok(Some(Contact {
            amocrm_id: Some(900),
            sync_status: SyncStatus::Synced,
            name: "Из вебхука".into(),
            ..contact(50, "+79160000001")
        }))
    });
    repo.expect_finish_sync()
        .with(eq(LocalId::new(1)), eq(AmoId::new(900)), eq("Из вебхука"))
        .times(1)
        .returning(|_, _, _| Ok(contact(50, "+79160000001")));
    let round = Round {
        contacts: vec![contact(1, "+79160000001")],
        leads: vec![],
    };
    let authority = MirrorAuthority::fixed(DedupMode::Mirror);
    run_deciding(amo, repo, MockLeadRepository::new(), round, authority).await;
}

#[tokio::test]
async fn a_retried_record_is_searched_for_even_in_mirror_mode() {
    let mut amo = MockAmoTransport::new();
    amo.expect_find_contact_by_phone()
        .times(1)
        .returning(|_| Ok(vec![amo_contact(500, "+7 916 000-00-01")]));
    amo.expect_create_contacts().never();
    let mut repo = MockContactRepository::new();
    repo.expect_finish_sync()
        .with(eq(LocalId::new(1)), eq(AmoId::new(500)), eq("В AmoCRM"))
        .times(1)
        .returning(|_, _, _| Ok(contact(1, "+79160000001")));
    let round = Round {
        contacts: vec![Contact {
            sync_attempts: 2,
            ..contact(1, "+79160000001")
        }],
        leads: vec![],
    };
    let authority = MirrorAuthority::fixed(DedupMode::Mirror);
    run_deciding(amo, repo, MockLeadRepository::new(), round, authority).await;
}

#[tokio::test]
async fn a_trusted_mirror_creates_a_lead_and_its_new_contact_without_any_search() {
    lead_with_new_contact(auto_with(all_facts()), 0).await;
}

fn pending(id: i64) -> Contact {
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .map(|d| d.naive_utc())
        .expect("ts");
    Contact {
        id,
        amocrm_id: None,
        name: format!("Клиент {id}"),
        phone: Some(format!("+7916000{id:04}")),
        sync_status: SyncStatus::Pending,
        sync_attempts: 0,
        sync_error: None,
        sync_lease_until: Some(at),
        amo_updated_at: None,
        deleted_at: None,
        created_at: at,
        updated_at: at,
    }
}

/// Runs one round over the pending contacts 1 to `count` (no leads).
async fn round_of_pending(
    count: i64,
    amo: &MockAmoTransport,
    contacts: &MockContactRepository,
    rows: &MockSyncRowRepository,
    authority: &MirrorAuthority,
    turn: Option<&Turn>,
) -> RoundReport {
    let logger = Logger::root(slog::Discard, slog::o!());
    let runner = RoundRunner {
        amo,
        contacts,
        leads: &MockLeadRepository::new(),
        rows,
        settings: SyncSettings::default(),
        authority,
        lifecycle: None,
        turn,
        logger: &logger,
    };
    let round = Round {
        contacts: (1..=count).map(pending).collect(),
        leads: Vec::new(),
    };
    runner.run(round).await
}

/// Runs one round over `count` new contacts under `facts`; returns how many searches
/// had been sent when each create went out, with its size.
async fn creates_of_a_round(count: i64, facts: FactAges) -> Vec<(usize, usize)> {
    let searched = Arc::new(AtomicUsize::new(0));
    let creates = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
    let mut amo = MockAmoTransport::new();
    let counter = Arc::clone(&searched);
    amo.expect_find_contact_by_phone().returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    });
    let (counter, seen) = (Arc::clone(&searched), Arc::clone(&creates));
    amo.expect_create_contacts().returning(move |batch| {
        let searched = counter.load(Ordering::SeqCst);
        seen.lock().expect("creates").push((searched, batch.len()));
        Ok((0..batch.len()).map(|i| Some(9_000 + i as i64)).collect())
    });
    let mut contacts = MockContactRepository::new();
    contacts.expect_find_by_phone().returning(|_| Ok(None));
    contacts
        .expect_finish_sync()
        .times(count as usize)
        .returning(|id, amocrm_id, _| {
            let mut row = pending(id.get());
            row.amocrm_id = Some(amocrm_id.get());
            Ok(row)
        });
    let rows = MockSyncRowRepository::new();
    let report = round_of_pending(count, &amo, &contacts, &rows, &auto_with(facts), None).await;
    assert!(!report.halted && report.skipped.is_empty());
    let creates = creates.lock().expect("creates").clone();
    assert_eq!(
        creates.iter().map(|(_, n)| n).sum::<usize>(),
        count as usize
    );
    creates
}

#[tokio::test]
async fn contacts_cleared_early_in_a_long_round_are_created_before_its_last_search() {
    let creates = creates_of_a_round(120, lacking_one_fact()[0]).await;
    let (searched_then, first_batch) = creates[0];
    assert!(
        searched_then < 120,
        "the first {first_batch} were created only after all 120 searches"
    );
    assert!(creates.len() <= 3, "created in batches of 50: {creates:?}");
}

#[tokio::test]
async fn a_round_without_searches_creates_its_contacts_in_one_request() {
    let creates = creates_of_a_round(120, all_facts()).await;
    assert_eq!(creates, vec![(0, 120)]);
}

/// Runs a searching round over `count` new contacts holding a turn, with `search`
/// answering each search; returns whether the turn was still held at each search, in
/// the order they were sent, and whether it was held after the round.
async fn turn_through_a_round(
    count: i64,
    search: fn(usize) -> Result<Vec<AmoContact>, AmoError>,
) -> (Vec<bool>, bool) {
    let turns = Arc::new(tokio::sync::Semaphore::new(1));
    let turn = Arc::new(Turn::take(&turns, true).await);
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut amo = MockAmoTransport::new();
    let (seen, during) = (Arc::clone(&held), Arc::clone(&turn));
    amo.expect_find_contact_by_phone().returning(move |_| {
        let mut seen = seen.lock().expect("held");
        seen.push(during.is_held());
        search(seen.len())
    });
    amo.expect_create_contacts()
        .returning(|batch| Ok((0..batch.len()).map(|i| Some(9_000 + i as i64)).collect()));
    let mut contacts = MockContactRepository::new();
    contacts
        .expect_finish_sync()
        .returning(|id, _, _| Ok(pending(id.get())));
    let mut rows = MockSyncRowRepository::new();
    rows.expect_record_failure()
        .returning(|_, _, _, _| Ok(false));
    let authority = MirrorAuthority::fixed(DedupMode::Remote);
    round_of_pending(count, &amo, &contacts, &rows, &authority, Some(&turn)).await;
    let held = held.lock().expect("held").clone();
    (held, turn.is_held())
}

#[tokio::test]
async fn a_searching_round_passes_its_turn_on_as_it_starts_its_last_searches() {
    let (held, after) = turn_through_a_round(100, |_| Ok(Vec::new())).await;
    assert_eq!(held.len(), 100);
    let passed_at = held
        .iter()
        .position(|h| !h)
        .expect("passed on before the end");
    // Not at the start (the next round would only queue behind this one), and with
    // this round's last searches still to go, so the limiter never idles between them.
    assert!(
        (100 - 2 * SEARCHES_IN_FLIGHT..100 - SEARCHES_IN_FLIGHT / 2).contains(&passed_at),
        "passed on at search {passed_at} of 100"
    );
    assert!(held[passed_at..].iter().all(|h| !h));
    assert!(!after);
}

#[tokio::test]
async fn a_halted_round_keeps_its_turn_so_no_other_round_starts_meanwhile() {
    let (held, after) = turn_through_a_round(40, |n| {
        if n == 1 {
            Err(AmoError::RateLimited { retry_after: None })
        } else {
            Ok(Vec::new())
        }
    })
    .await;
    assert!(held.iter().all(|h| *h));
    assert!(after, "the worker keeps it through its pause");
}

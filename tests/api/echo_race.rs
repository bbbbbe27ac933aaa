use std::time::Duration;

use amosync::domain::{AmoId, LocalId};
use amosync::repositories::{
    Claim, ContactChange, ContactRepository, Db, MirrorBatch, MirrorRepository,
    MysqlContactRepository, MysqlMirrorRepository, NewContact,
};

use crate::helpers::TestDb;

/// AmoCRM's webhook for a contact amosync is creating can arrive before amosync has
/// saved the AmoCRM id: the echo inserts a row for that id, then finishing the pending
/// placeholder must fold it into that row instead of failing or leaving two.
#[tokio::test]
async fn an_echo_that_overtakes_the_create_is_folded_into_one_row() {
    let test_db = TestDb::create().await;
    test_db.migrate().await;
    let db = Db::new(&test_db.url(), 2, Duration::from_secs(5));
    let contacts = MysqlContactRepository::new(db.clone());
    let mirror = MysqlMirrorRepository::new(db);

    let new = NewContact {
        name: "Иван".into(),
        phone: "+79161234567".into(),
    };
    let Claim::Leased(pending) = contacts
        .claim_by_phone(new, Duration::from_secs(60))
        .await
        .expect("claim")
    else {
        panic!("a new phone is leased to the caller");
    };
    let echo = MirrorBatch {
        contacts: vec![ContactChange {
            amocrm_id: 777,
            name: Some("Иван".into()),
            phone: Some("+79161234567".into()),
            changed_at: 1_800_000_000,
        }],
        ..MirrorBatch::default()
    };
    mirror.apply(echo).await.expect("echo applied");
    assert_eq!(
        test_db.query_i64("SELECT COUNT(*) AS n FROM contacts"),
        2,
        "the race: two rows for a moment"
    );

    let finished = contacts
        .finish_sync(LocalId::new(pending.id), AmoId::new(777), "Иван")
        .await
        .expect("finish folds");
    assert_eq!(finished.amocrm_id, Some(777));
    assert_ne!(finished.id, pending.id, "the echoed row is the one kept");
    assert_eq!(test_db.query_i64("SELECT COUNT(*) AS n FROM contacts"), 1);
    let open_jobs = test_db.query_i64("SELECT COUNT(*) AS n FROM sync_jobs WHERE status <> 'done'");
    assert_eq!(open_jobs, 0, "the placeholder's job is closed");
}

use std::time::Duration;

use amosync::repositories::{Db, InboxRepository, MysqlInboxRepository, NewDelivery};
use diesel::sql_types::Text;
use diesel::RunQueryDsl;

use crate::helpers::TestDb;

fn deliveries(first: usize, count: usize) -> Vec<NewDelivery> {
    (first..first + count)
        .map(|n| NewDelivery {
            content_type: "application/x-www-form-urlencoded".into(),
            body: format!("contacts[add][0][id]={n}").into_bytes(),
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct Counter {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Statements this session (the pool's one connection) has prepared so far; the
/// query reading it is prepared too, and counts itself.
async fn prepared_so_far(db: &Db) -> i64 {
    db.run(|conn| {
        let counter: Counter = diesel::sql_query(
            "SELECT VARIABLE_VALUE AS value FROM information_schema.SESSION_STATUS \
             WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'",
        )
        .get_result(conn)?;
        Ok(counter.value.parse().unwrap_or(-1))
    })
    .await
    .expect("session status")
}

/// Under a flood every group commit is a multi-row INSERT and a query for its ids;
/// preparing both anew each time doubled the round trips of every commit. (Batches
/// of 4 rows: the group commit makes small batches a power of two.)
#[tokio::test]
async fn group_commits_of_a_size_seen_before_reuse_their_prepared_statements() {
    let test_db = TestDb::create().await;
    test_db.migrate().await;
    let db = Db::new(&test_db.url(), 1, Duration::from_secs(5));
    let inbox = MysqlInboxRepository::new(db.clone());

    let first = inbox.store_all(deliveries(0, 4)).await.expect("store");
    let before = prepared_so_far(&db).await;
    let mut ids = first.clone();
    for round in 1..=5 {
        ids.extend(
            inbox
                .store_all(deliveries(round * 4, 4))
                .await
                .expect("store"),
        );
    }
    let after = prepared_so_far(&db).await;
    assert_eq!(
        after - before,
        1,
        "only the status query itself was prepared"
    );

    assert_eq!(ids.len(), 24);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    for (n, id) in ids.iter().enumerate() {
        let own = test_db.query_i64(&format!(
            "SELECT COUNT(*) AS n FROM webhook_inbox WHERE id = {id} \
             AND body = 'contacts[add][0][id]={n}'"
        ));
        assert_eq!(own, 1, "id {id} names the row of delivery {n}");
    }
}

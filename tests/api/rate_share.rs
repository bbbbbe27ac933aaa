use std::time::Duration;

use amosync::repositories::{Db, MysqlSenderRepository, SenderRepository};

use crate::helpers::TestDb;

#[tokio::test]
async fn instances_count_each_other_by_heartbeat_and_leave_at_shutdown() {
    let db = TestDb::create().await;
    db.migrate().await;
    let senders = MysqlSenderRepository::new(Db::new(&db.url(), 2, Duration::from_secs(5)));
    let alive = Duration::from_secs(6);
    assert_eq!(senders.heartbeat("a", alive).await.expect("beat"), 1);
    assert_eq!(senders.heartbeat("b", alive).await.expect("beat"), 2);
    assert_eq!(
        senders.heartbeat("a", alive).await.expect("beat"),
        2,
        "a repeat beat is not a new instance"
    );
    senders.leave("a").await.expect("leave");
    assert_eq!(senders.heartbeat("b", alive).await.expect("beat"), 1);
    // An instance silent for longer than `alive` no longer counts.
    db.execute("UPDATE amo_senders SET seen_at = NOW(6) - INTERVAL 1 MINUTE");
    assert_eq!(senders.heartbeat("c", alive).await.expect("beat"), 1);
}

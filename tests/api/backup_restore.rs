//! `scripts/backup.sh` and `scripts/restore.sh` against a real database: the dump
//! records its time, the restore brings the rows back and leaves a restore marker.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::TestApp;
use crate::support::TestDb;

/// Runs a script of `scripts/` with the connection parts of `db`, as an operator would.
pub fn run_script(db: &TestDb, script: &str, args: &[&str]) -> Output {
    let url = url::Url::parse(&db.url()).expect("database URL");
    let root = env!("CARGO_MANIFEST_DIR");
    Command::new("bash")
        .arg(Path::new(root).join("scripts").join(script))
        .args(args)
        .env("DB_HOST", url.host_str().unwrap_or("127.0.0.1"))
        .env("DB_PORT", url.port().unwrap_or(3306).to_string())
        .env("DB_USER", url.username())
        .env("DB_PASSWORD", url.password().unwrap_or_default())
        .env("DB_NAME", url.path().trim_start_matches('/'))
        .env_remove("COMPOSE_SERVICE")
        .output()
        .expect("run the script")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Backs `db` up into `dir`; the dump's path.
pub fn backup(db: &TestDb, dir: &Path) -> String {
    stdout(&run_script(
        db,
        "backup.sh",
        &[dir.to_str().expect("utf-8 path")],
    ))
}

pub fn restore(db: &TestDb, dump: &str) {
    stdout(&run_script(db, "restore.sh", &["--yes", dump]));
}

#[tokio::test]
async fn a_backup_restores_its_rows_and_leaves_a_marker_with_its_time() {
    let db = TestDb::create().await;
    db.migrate().await;
    db.execute(
        "INSERT INTO contacts (name, phone, amocrm_id, sync_status) \
         VALUES ('Иван Петров', '+79161234567', 101, 'synced')",
    );
    let dir =
        std::env::temp_dir().join(format!("amosync-backup-{}", uuid::Uuid::new_v4().simple()));
    let before = db.query_i64("SELECT CAST(UNIX_TIMESTAMP(UTC_TIMESTAMP()) AS SIGNED) AS n");
    let dump = backup(&db, &dir);
    assert!(dump.ends_with(".sql.gz"), "{dump}");

    db.execute(
        "INSERT INTO contacts (name, phone, amocrm_id, sync_status) \
         VALUES ('После бэкапа', '+79161234568', 102, 'synced')",
    );
    // Without --yes nothing is touched.
    let refused = run_script(&db, "restore.sh", &[&dump]);
    assert!(!refused.status.success());
    assert_eq!(db.query_i64("SELECT COUNT(*) AS n FROM contacts"), 2);

    restore(&db, &dump);
    assert_eq!(
        db.query_strings("SELECT name AS s FROM contacts"),
        vec!["Иван Петров".to_owned()]
    );
    assert_eq!(
        db.query_i64("SELECT COUNT(*) AS n FROM restore_markers WHERE handled_at IS NULL"),
        1
    );
    let taken = db.query_i64(
        "SELECT CAST(UNIX_TIMESTAMP(backup_taken_at) AS SIGNED) AS n FROM restore_markers",
    );
    // Same session time zone for both readings, so the offset cancels out.
    assert!(
        (before - 2..=before + 5).contains(&taken),
        "backup time {taken}, test clock {before}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_file_that_is_not_a_backup_is_refused_and_the_database_kept() {
    let db = TestDb::create().await;
    db.migrate().await;
    db.execute("INSERT INTO contacts (name, phone, sync_status) VALUES ('Анна', '+79160000001', 'pending')");
    let file = std::env::temp_dir().join(format!(
        "amosync-not-a-backup-{}.sql.gz",
        uuid::Uuid::new_v4().simple()
    ));
    let gz = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo 'DROP TABLE contacts;' | gzip > '{}'",
            file.display()
        ))
        .status()
        .expect("gzip");
    assert!(gz.success());
    let refused = run_script(
        &db,
        "restore.sh",
        &["--yes", file.to_str().expect("utf-8 path")],
    );
    assert!(!refused.status.success());
    assert_eq!(db.query_i64("SELECT COUNT(*) AS n FROM contacts"), 1);
    let _ = std::fs::remove_file(&file);
}

/// Every live row of the mirror's `table` (contacts, leads) as `(amocrm_id, name)`,
/// sorted.
fn mirror_rows(db: &TestDb, table: &str) -> Vec<String> {
    sorted(db.query_strings(&format!(
        "SELECT CONCAT(COALESCE(amocrm_id, 'none'), ' ', name) AS s FROM {table} \
         WHERE deleted_at IS NULL"
    )))
}

fn amocrm_contacts(amo: &crate::fake_amo::FakeAmo) -> Vec<String> {
    sorted(
        amo.contacts()
            .iter()
            .map(|c| format!("{} {}", c.id, c.name))
            .collect(),
    )
}

fn amocrm_leads(amo: &crate::fake_amo::FakeAmo) -> Vec<String> {
    sorted(
        amo.leads()
            .iter()
            .map(|l| format!("{} {}", l.id, l.name))
            .collect(),
    )
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

/// The restore drill: submissions and AmoCRM-side changes, a backup, more of both
/// (among them a contact's and a lead's jobs queued before the backup that reach
/// AmoCRM after it), a restore, a restart. amosync must catch up from the backup's
/// time (the mirror equals AmoCRM) and the replayed jobs must find their contact and
/// lead instead of creating them again (no duplicate), losing nothing accepted.
///
/// `AMO_DEDUP=mirror` (never search on a first attempt) and reconciliation off, so
/// only what amosync does about the restore marker can pass this.
#[tokio::test]
async fn after_a_restore_amosync_catches_up_and_replayed_jobs_search_before_creating() {
    let mirror_mode = |env: &mut std::collections::HashMap<String, String>| {
        env.insert("AMO_DEDUP".into(), "mirror".into());
    };
    let app = TestApp::builder().env(mirror_mode).spawn().await;

    // Before the backup: a submission, a contact a manager made in AmoCRM (imported),
    // and an accepted submission the worker has not attempted yet.
    let first = app
        .post(
            "/api/v1/contacts",
            &serde_json::json!({"name": "Клиент До", "phone": "+79161110001"}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let managers = app.amo.create_contact("Менеджер До", &["+79161110002"]);
    let import = app.cli(&["sync", "--full"]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    app.db.execute(
        "INSERT INTO contacts (name, phone, sync_status) VALUES ('Клиент В очереди', '+79161110003', 'pending')",
    );
    app.db.execute(
        "INSERT INTO sync_jobs (entity, record_id, next_attempt_at) \
         SELECT 'contact', id, NOW(6) + INTERVAL 8 SECOND FROM contacts WHERE phone = '+79161110003'",
    );
    // A lead for the first client, accepted and queued like the contact above.
    app.db.execute(
        "INSERT INTO leads (name, contact_id, contact_amocrm_id, sync_status) \
         SELECT 'Заказ В очереди', id, amocrm_id, 'pending' FROM contacts WHERE phone = '+79161110001'",
    );
    app.db.execute(
        "INSERT INTO sync_jobs (entity, record_id, next_attempt_at) \
         SELECT 'lead', id, NOW(6) + INTERVAL 8 SECOND FROM leads WHERE name = 'Заказ В очереди'",
    );
    let dir = std::env::temp_dir().join(format!("amosync-drill-{}", uuid::Uuid::new_v4().simple()));
    let dump = backup(&app.db, &dir);
    assert_eq!(
        app.db
            .query_i64("SELECT COUNT(*) AS n FROM contacts WHERE sync_status = 'pending'"),
        1,
        "the queued submission is in the backup unattempted"
    );
    assert_eq!(
        app.count_where("leads", "sync_status = 'pending' AND sync_attempts = 0"),
        1,
        "the queued lead is in the backup unattempted"
    );

    // After the backup: another submission, AmoCRM-side changes, and the queued
    // submission reaching AmoCRM.
    let second = app
        .post(
            "/api/v1/contacts",
            &serde_json::json!({"name": "Клиент После", "phone": "+79161110004"}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    app.amo.create_contact("Менеджер После", &["+79161110005"]);
    assert!(app
        .amo
        .update_contact(managers, Some("Менеджер Переименован"), None));
    // A busy account: eight pages of changes older than the queued submission's
    // contact, so the catch-up reaches that contact only after the sync worker acted.
    for i in 0..2_000 {
        app.amo
            .create_contact(&format!("Импорт {i}"), &[&format!("+7916200{i:04}")]);
    }
    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM contacts WHERE phone = '+79161110003' AND amocrm_id IS NOT NULL",
        1,
        std::time::Duration::from_secs(30),
    )
    .await;
    app.wait_for_within(
        "SELECT COUNT(*) AS n FROM leads WHERE name = 'Заказ В очереди' AND amocrm_id IS NOT NULL",
        1,
        std::time::Duration::from_secs(30),
    )
    .await;
    let before_restore = amocrm_contacts(&app.amo);
    assert_eq!(before_restore.len(), 2_005);
    let leads_before_restore = amocrm_leads(&app.amo);
    assert_eq!(leads_before_restore.len(), 1, "{leads_before_restore:?}");

    // Stop, restore, start again on the same database and AmoCRM.
    let crate::helpers::TestApp {
        db, amo, shutdown, ..
    } = app;
    if let Some(trigger) = shutdown {
        trigger.shutdown().await;
    }
    restore(&db, &dump);
    let _ = std::fs::remove_dir_all(&dir);
    // AmoCRM's own pace: each page of the catch-up takes a while.
    amo.set_latency(std::time::Duration::from_millis(500));
    let app = TestApp::builder()
        .against(amo)
        .on(db)
        .env(mirror_mode)
        .spawn()
        .await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (mirror, amocrm) = (mirror_rows(&app.db, "contacts"), amocrm_contacts(&app.amo));
        let settled = app.count_where("sync_jobs", "status = 'pending'") == 0;
        let leads_caught_up = mirror_rows(&app.db, "leads") == amocrm_leads(&app.amo);
        if settled && mirror == amocrm && leads_caught_up {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror did not catch up with AmoCRM after the restore: {} rows, AmoCRM {}; \
             missing {:?}, extra {:?}; leads {:?}, AmoCRM's {:?}",
            mirror.len(),
            amocrm.len(),
            amocrm
                .iter()
                .filter(|c| !mirror.contains(c))
                .take(5)
                .collect::<Vec<_>>(),
            mirror
                .iter()
                .filter(|c| !amocrm.contains(c))
                .take(5)
                .collect::<Vec<_>>(),
            mirror_rows(&app.db, "leads"),
            amocrm_leads(&app.amo),
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // No duplicate in AmoCRM: the replayed job found the contact made after the backup.
    let after = amocrm_contacts(&app.amo);
    let made_again: Vec<&String> = after
        .iter()
        .filter(|c| !before_restore.contains(c))
        .collect();
    assert!(
        made_again.is_empty(),
        "created again in AmoCRM: {made_again:?}"
    );
    assert_eq!(app.amo.contacts().len(), 2_005);
    assert_eq!(
        amocrm_leads(&app.amo),
        leads_before_restore,
        "the replayed lead was created again in AmoCRM"
    );
    // Nothing accepted is lost: all three submissions are in AmoCRM and the mirror.
    for phone in ["+79161110001", "+79161110003", "+79161110004"] {
        assert_eq!(
            app.count_where(
                "contacts",
                &format!("phone = '{phone}' AND amocrm_id IS NOT NULL")
            ),
            1,
            "{phone}"
        );
    }
    assert_eq!(
        app.db
            .query_i64("SELECT COUNT(*) AS n FROM restore_markers WHERE handled_at IS NULL"),
        0
    );
}

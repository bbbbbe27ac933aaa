//! `scripts/backup.sh` and `scripts/restore.sh` against a real database: the dump
//! records its time, the restore brings the rows back and leaves a restore marker.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::TestDb;

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

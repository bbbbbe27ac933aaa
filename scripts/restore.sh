#!/usr/bin/env bash
# Restores a dump made by scripts/backup.sh into amosync's database, replacing it,
# and leaves a restore marker that amosync acts on when it starts.
#
#   scripts/restore.sh --yes <amosync-DB-TIME.sql.gz>
#
# Stop every amosync instance first (docs/runbook.md, "Restore"). The database
# DB_NAME is dropped and recreated from the dump. The marker (a row in
# restore_markers with the backup's time) makes amosync, at its next start, treat
# the mirror as behind AmoCRM: it reconciles from the backup's time and every job
# replayed from the outbox looks its record up in AmoCRM before creating it.
#
# Connection as for scripts/backup.sh: DB_HOST, DB_PORT, DB_USER, DB_PASSWORD,
# DB_NAME, and COMPOSE_SERVICE=db for the compose stack.
set -euo pipefail

DB_HOST="${DB_HOST:-127.0.0.1}"
DB_PORT="${DB_PORT:-3306}"
DB_USER="${DB_USER:-root}"
DB_NAME="${DB_NAME:-amosync}"

say() { printf '[restore] %s\n' "$*" >&2; }
usage() { say "usage: scripts/restore.sh --yes <backup.sql.gz>"; exit 2; }

[ "${1:-}" = "--yes" ] || usage
file="${2:-}"
[ -n "$file" ] && [ -f "$file" ] || usage
case "$DB_NAME" in
    *[!A-Za-z0-9_]* | "") say "DB_NAME must be letters, digits and _: '$DB_NAME'"; exit 2 ;;
esac

taken_at=$(gzip -dc "$file" | head -n 1 | sed -n 's/^-- amosync-backup-taken-at: \([0-9: -]*\)$/\1/p')
if [ -z "$taken_at" ]; then
    say "$file has no amosync-backup-taken-at line: not a dump of scripts/backup.sh"
    exit 1
fi
gzip -t "$file"

client() {
    local args=(--default-character-set=utf8mb4 -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" "$@")
    if [ -n "${COMPOSE_SERVICE:-}" ]; then
        docker compose exec -T -e MYSQL_PWD="${DB_PASSWORD:-}" "$COMPOSE_SERVICE" mysql "${args[@]}"
    else
        MYSQL_PWD="${DB_PASSWORD:-}" mysql "${args[@]}"
    fi
}

say "replacing $DB_NAME on $DB_HOST:$DB_PORT with the backup of $taken_at UTC"
client -e "DROP DATABASE IF EXISTS \`$DB_NAME\`;
    CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
gzip -dc "$file" | client "$DB_NAME"

# The table exists in every dump taken since it was added; an older dump gets it here
# (its migration creates it only when missing).
client "$DB_NAME" -e "CREATE TABLE IF NOT EXISTS restore_markers (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        backup_taken_at DATETIME(6) NOT NULL,
        restored_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        handled_at DATETIME(6) NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
    INSERT INTO restore_markers (backup_taken_at, restored_at)
        VALUES ('$taken_at', UTC_TIMESTAMP(6))"
say "done; start amosync: it reconciles from $taken_at UTC before trusting the mirror"

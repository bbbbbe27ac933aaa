#!/usr/bin/env bash
# A consistent, compressed, timestamped dump of amosync's database.
#
#   scripts/backup.sh [directory]        (default: $BACKUP_DIR, else ./backups)
#
# Writes <directory>/amosync-<DB_NAME>-<UTC time>.sql.gz and prints its path. The
# dump is taken with --single-transaction (InnoDB's consistent snapshot: no table is
# locked, so amosync keeps serving). Its first line records when the snapshot began;
# scripts/restore.sh reads it and tells amosync, which then reconciles from that
# moment (see docs/runbook.md, "After a restore").
#
# Connection, as amosync's own settings: DB_HOST (127.0.0.1), DB_PORT (3306),
# DB_USER (root), DB_PASSWORD (passed in the environment, never on the command
# line), DB_NAME (amosync). With COMPOSE_SERVICE=db the dump runs inside that
# compose service (`docker compose exec`), for the stack of docker-compose.yml.
# BACKUP_KEEP_DAYS (default 14; 0 keeps all) removes older dumps of this database
# from the directory after a successful backup.
set -euo pipefail

DB_HOST="${DB_HOST:-127.0.0.1}"
DB_PORT="${DB_PORT:-3306}"
DB_USER="${DB_USER:-root}"
DB_NAME="${DB_NAME:-amosync}"
KEEP_DAYS="${BACKUP_KEEP_DAYS:-14}"
DIR="${1:-${BACKUP_DIR:-backups}}"

say() { printf '[backup] %s\n' "$*" >&2; }

case "$DB_NAME" in
    *[!A-Za-z0-9_]* | "") say "DB_NAME must be letters, digits and _: '$DB_NAME'"; exit 2 ;;
esac
case "$KEEP_DAYS" in
    *[!0-9]* | "") say "BACKUP_KEEP_DAYS must be a whole number of days: '$KEEP_DAYS'"; exit 2 ;;
esac

dump_command() {
    local dump=mysqldump
    # MariaDB 11 ships mariadb-dump and may drop the old name.
    command -v mysqldump >/dev/null 2>&1 || dump=mariadb-dump
    local args=(--single-transaction --quick --routines --triggers --hex-blob
        --default-character-set=utf8mb4 --no-tablespaces
        -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" "$DB_NAME")
    if [ -n "${COMPOSE_SERVICE:-}" ]; then
        docker compose exec -T -e MYSQL_PWD="${DB_PASSWORD:-}" "$COMPOSE_SERVICE" mysqldump "${args[@]}"
    else
        MYSQL_PWD="${DB_PASSWORD:-}" "$dump" "${args[@]}"
    fi
}

mkdir -p "$DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
file="$DIR/amosync-$DB_NAME-$stamp.sql.gz"
partial="$file.partial"
trap 'rm -f "$partial"' EXIT

# Taken before the snapshot opens, so everything in the dump is at least this old:
# reconciling from here misses nothing that happened after the snapshot.
taken_at=$(date -u '+%Y-%m-%d %H:%M:%S')
say "dumping $DB_NAME from $DB_HOST:$DB_PORT (snapshot from $taken_at UTC)"
{
    printf -- '-- amosync-backup-taken-at: %s\n' "$taken_at"
    dump_command
} | gzip -6 >"$partial"
# A dump that ended early has no completion line; never keep it as a backup.
if ! gzip -dc "$partial" | tail -n 1 | grep -q '^-- Dump completed'; then
    say "the dump did not complete; nothing kept"
    exit 1
fi
mv "$partial" "$file"
trap - EXIT

if [ "$KEEP_DAYS" -gt 0 ]; then
    find "$DIR" -maxdepth 1 -name "amosync-$DB_NAME-*.sql.gz" -mtime +"$KEEP_DAYS" -print -delete |
        sed 's/^/[backup] removed old /' >&2
fi
say "done: $(du -h "$file" | cut -f1)"
echo "$file"

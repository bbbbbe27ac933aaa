#!/usr/bin/env bash
# Property-based API testing: Schemathesis generates requests from the service's own
# /openapi.json and runs every check against a live amosync, which talks to the fake
# AmoCRM, on a database of its own. Any failure (a 5xx, a response that does not match
# the schema, valid input refused or invalid input accepted) fails the script.
#
#   scripts/schemathesis.sh [extra `st run` options]
#
# Environment: ST_MAX_EXAMPLES (examples per operation, default 30); ST_DB_HOST,
# ST_DB_PORT, ST_DB_USER (the MySQL/MariaDB server, default root@127.0.0.1:3306; the
# database amosync_schemathesis is dropped and recreated on every run); ST_KEEP_LOGS
# (set: keep the services' logs); CARGO_TARGET_DIR. Schemathesis' own settings are in
# schemathesis.toml at the repository root. The random seed is printed: pass
# `--seed N` to replay a run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-30}"
DB_HOST="${ST_DB_HOST:-127.0.0.1}"
DB_PORT="${ST_DB_PORT:-3306}"
DB_USER="${ST_DB_USER:-root}"
DB_NAME=amosync_schemathesis
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

say() { printf '[schemathesis] %s\n' "$*"; }

# `st` of the pinned version: the one on PATH when it is that version, otherwise a
# virtualenv of its own in the user's cache, made once.
st_command() {
    if command -v st >/dev/null 2>&1 && [ "$(st --version 2>/dev/null)" = "st, version $SCHEMATHESIS_VERSION" ]; then
        command -v st
        return
    fi
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/amosync/schemathesis-$SCHEMATHESIS_VERSION"
    if [ ! -x "$venv/bin/st" ]; then
        say "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" >&2
    fi
    echo "$venv/bin/st"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

WORK_DIR=$(mktemp -d)
PIDS=()
OK=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$OK" != 1 ]; then
        for log in "$WORK_DIR"/*.log; do
            [ -s "$log" ] || continue
            say "last lines of $(basename "$log"):"
            tail -n 40 "$log" | sed 's/^/    /'
        done
    fi
    if [ -n "${ST_KEEP_LOGS:-}" ]; then
        say "logs kept in $WORK_DIR"
    else
        rm -rf "$WORK_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # url, what
    for _ in $(seq 1 150); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    say "$2 did not answer at $1" >&2
    return 1
}

ST=$(st_command)

say "building the binaries"
cargo build --quiet --workspace --bin amosync --bin amosync-fake-amocrm
BIN=$(cd "$CARGO_TARGET_DIR/debug" && pwd)

say "recreating database $DB_NAME"
mysql -u"$DB_USER" -h"$DB_HOST" -P"$DB_PORT" -e "DROP DATABASE IF EXISTS \`$DB_NAME\`; CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"

FAKE_PORT=$(free_port)
env -i PATH="$PATH" "$BIN/amosync-fake-amocrm" --bind 127.0.0.1 --port "$FAKE_PORT" \
    >"$WORK_DIR/fake-amocrm.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$FAKE_PORT/_fake/state" "the fake AmoCRM"

APP_PORT=$(free_port)
TOKEN="schemathesis-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# schemathesis.toml sends deliveries to the webhook route with this secret.
export AMOSYNC_WEBHOOK_SECRET="schemathesis-webhook-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
(
    # Only these variables, and started outside the repository so that no .env is read:
    # this is the whole configuration. No AMO_ACCOUNT_ID, so generated webhook deliveries
    # are stored and applied rather than refused as another account's.
    cd "$WORK_DIR"
    exec env -i PATH="$PATH" RUST_BACKTRACE=1 \
        DATABASE_URL="mysql://$DB_USER@$DB_HOST:$DB_PORT/$DB_NAME" \
        AMO_BASE_URL="http://127.0.0.1:$FAKE_PORT" AMO_ACCESS_TOKEN=fake-amo-access-token \
        API_TOKENS="schemathesis:write+read+admin:$TOKEN" WEBHOOK_SECRET="$AMOSYNC_WEBHOOK_SECRET" \
        SERVER_URL="http://127.0.0.1:$APP_PORT" BIND_ADDR=127.0.0.1 PORT="$APP_PORT" \
        LOG_LEVEL=warn HTTP_WORKERS=2 \
        "$BIN/amosync" serve
) >"$WORK_DIR/amosync.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$APP_PORT/health" "amosync"

say "running schemathesis $SCHEMATHESIS_VERSION (max $MAX_EXAMPLES examples per operation)"
status=0
"$ST" run "http://127.0.0.1:$APP_PORT/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --no-color \
    "$@" || status=$?
if [ "$status" = 0 ]; then
    OK=1
    say "no failures"
fi
exit "$status"

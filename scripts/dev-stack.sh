#!/usr/bin/env bash
# A local stack without Docker: the fake AmoCRM, amosync and nginx (the repo's
# config) in front, on a MySQL-compatible server already installed here.
#
#   scripts/dev-stack.sh up     build, start everything, wait for /health, print URLs
#   scripts/dev-stack.sh down   stop exactly what `up` started
#
# Ports: NGINX_PORT (8088), APP_PORT (3000), FAKE_AMO_PORT (8090).
# Database server: DEV_DATABASE_URL (mysql://root@127.0.0.1:3306), database amosync_dev,
# recreated on every `up` (the fake AmoCRM keeps its data in memory).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="$PWD/.dev-stack"
NGINX_PORT="${NGINX_PORT:-8088}"
APP_PORT="${APP_PORT:-3000}"
FAKE_AMO_PORT="${FAKE_AMO_PORT:-8090}"
DEV_DATABASE_URL="${DEV_DATABASE_URL:-mysql://root@127.0.0.1:3306}"
DB_NAME="${DEV_DB_NAME:-amosync_dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
BIN="$CARGO_TARGET_DIR/release"

# The same client token newcomers find in .env.example.
API_TOKENS="$(sed -n 's/^API_TOKENS=//p' .env.example | head -n 1)"
WEBHOOK_SECRET="dev-stack-webhook-secret-0123456789abcdef"

say() { printf '[dev-stack] %s\n' "$*"; }

start_database() {
    if mysqladmin -uroot -h127.0.0.1 --connect-timeout=2 ping >/dev/null 2>&1; then
        return
    fi
    if [ -x /usr/sbin/mariadbd ]; then
        say "starting MariaDB"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    elif [ -x /usr/sbin/mysqld ]; then
        say "starting MySQL"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mysqld
    else
        say "no MySQL-compatible server is installed or reachable at 127.0.0.1:3306" >&2
        exit 1
    fi
    for _ in $(seq 1 60); do
        mysqladmin -uroot -h127.0.0.1 --connect-timeout=2 ping >/dev/null 2>&1 && return
        sleep 1
    done
    say "the database did not come up" >&2
    exit 1
}

wait_for() { # url, what
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    say "$2 did not answer at $1; see $STATE_DIR/*.log" >&2
    return 1
}

start_bg() { # name, command...
    local name=$1
    shift
    "$@" >"$STATE_DIR/$name.log" 2>&1 &
    echo $! >"$STATE_DIR/$name.pid"
}

up() {
    if [ -f "$STATE_DIR/amosync.pid" ]; then
        say "already up (run '$0 down' first)"
        exit 1
    fi
    command -v nginx >/dev/null || { say "nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }
    mkdir -p "$STATE_DIR/nginx"
    start_database
    say "building release binaries"
    cargo build --release --quiet --bin amosync --bin amosync-fake-amocrm

    # The fake AmoCRM starts empty every time, so the mirror starts empty too.
    mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$DB_NAME\`; CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"

    start_bg fake-amocrm "$BIN/amosync-fake-amocrm" --bind 127.0.0.1 --port "$FAKE_AMO_PORT"
    wait_for "http://127.0.0.1:$FAKE_AMO_PORT/_fake/state" "the fake AmoCRM"

    export DATABASE_URL="$DEV_DATABASE_URL/$DB_NAME" AMO_BASE_URL="http://127.0.0.1:$FAKE_AMO_PORT"
    export AMO_ACCESS_TOKEN="fake-amo-access-token" AMO_ACCOUNT_ID=29000001 API_TOKENS WEBHOOK_SECRET
    export SERVER_URL="http://127.0.0.1:$NGINX_PORT" BIND_ADDR=127.0.0.1 PORT="$APP_PORT" LOG_LEVEL=info
    unset AMO_DOMAIN
    # .env.example's sample token, on loopback: a local demo (amosync refuses it otherwise).
    export AMOSYNC_DEMO=true
    start_bg amosync "$BIN/amosync" serve
    wait_for "http://127.0.0.1:$APP_PORT/health" "amosync"

    sed -e "s/server amosync:3000/server 127.0.0.1:$APP_PORT/" \
        -e "s/listen 80;/listen $NGINX_PORT;/" \
        -e "s#pid /tmp/nginx.pid;#pid $STATE_DIR/nginx/nginx.pid;#" \
        -e "s#/tmp/nginx-#$STATE_DIR/nginx/#g" \
        nginx/nginx.conf >"$STATE_DIR/nginx/nginx.conf"
    nginx -c "$STATE_DIR/nginx/nginx.conf" -e "$STATE_DIR/nginx.log" 2>>"$STATE_DIR/nginx.log"
    wait_for "http://127.0.0.1:$NGINX_PORT/health" "nginx -> amosync"

    "$BIN/amosync" webhooks subscribe >>"$STATE_DIR/amosync.log" 2>&1 || say "webhook subscription failed (see amosync.log)"

    local token="${API_TOKENS#*:}"
    cat <<INFO
[dev-stack] up
  amosync (through nginx): http://127.0.0.1:$NGINX_PORT
  fake AmoCRM:             http://127.0.0.1:$FAKE_AMO_PORT  (state: /_fake/state)
  API token:               $token
  try:
    curl -sS -X POST http://127.0.0.1:$NGINX_PORT/api/v1/contacts \\
      -H 'Authorization: Bearer $token' -H 'Content-Type: application/json' \\
      -d '{"name": "Иван Петров", "phone": "8 (916) 123-45-67"}'
  stop with: $0 down
INFO
}

down() {
    if [ -f "$STATE_DIR/nginx/nginx.pid" ]; then
        nginx -c "$STATE_DIR/nginx/nginx.conf" -e "$STATE_DIR/nginx.log" -s quit 2>/dev/null || true
    fi
    for name in amosync fake-amocrm; do
        if [ -f "$STATE_DIR/$name.pid" ]; then
            kill "$(cat "$STATE_DIR/$name.pid")" 2>/dev/null || true
            rm -f "$STATE_DIR/$name.pid"
        fi
    done
    sleep 0.5
    rm -rf "$STATE_DIR/nginx"
    say "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

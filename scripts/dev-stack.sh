#!/usr/bin/env bash
# A local stack without Docker: the fake AmoCRM, amosync and nginx (the repo's
# config) in front, on a MySQL-compatible server already installed here.
#
#   scripts/dev-stack.sh up [--reset]   build, start everything, wait for /health, print URLs
#   scripts/dev-stack.sh down           stop exactly what `up` started
#
# Ports: NGINX_PORT (8088), APP_PORT (3000), FAKE_AMO_PORT (8090); `up` refuses to start
# when one is taken. Database server: DEV_DATABASE_URL (mysql://root@127.0.0.1:3306),
# database DEV_DB_NAME (amosync_dev). `up` recreates the database it created itself
# (the fake AmoCRM keeps its data in memory, so the mirror starts empty too); one it
# did not create is left alone unless `--reset` says to drop it.
#
# The processes run detached from the terminal; their logs, nginx's access log among
# them, are in .dev-stack/. `up` writes .dev-stack.env for the CLI:
#   set -a; . ./.dev-stack.env; set +a; "$CARGO_TARGET_DIR"/release/amosync sync --full
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="$PWD/.dev-stack"
ENV_FILE="$PWD/.dev-stack.env"
NGINX_PORT="${NGINX_PORT:-8088}"
APP_PORT="${APP_PORT:-3000}"
FAKE_AMO_PORT="${FAKE_AMO_PORT:-8090}"
DEV_DATABASE_URL="${DEV_DATABASE_URL:-mysql://root@127.0.0.1:3306}"
DB_NAME="${DEV_DB_NAME:-amosync_dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
BIN="$CARGO_TARGET_DIR/release"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# The same client token newcomers find in .env.example.
API_TOKENS="$(sed -n 's/^API_TOKENS=//p' .env.example | head -n 1)"
WEBHOOK_SECRET="dev-stack-webhook-secret-0123456789abcdef"

say() { printf '[dev-stack] %s\n' "$*"; }
fail() {
    say "$*" >&2
    exit 1
}

# mysql client options for DEV_DATABASE_URL (user, password, host, port).
db_args() {
    local rest=${DEV_DATABASE_URL#mysql://} auth host user pass port
    auth=${rest%@*}
    [ "$auth" = "$rest" ] && auth=root
    host=${rest#*@}
    host=${host%%/*}
    user=${auth%%:*}
    pass=""
    [ "$auth" != "$user" ] && pass=${auth#*:}
    port=3306
    [ "${host#*:}" != "$host" ] && port=${host#*:}
    host=${host%%:*}
    printf '%s\n' "-u$user" "-h$host" "-P$port"
    [ -n "$pass" ] && printf '%s\n' "-p$pass"
    return 0
}

sql() { # statement
    local args
    mapfile -t args < <(db_args)
    mysql "${args[@]}" --batch --skip-column-names -e "$1"
}

start_database() {
    local args
    mapfile -t args < <(db_args)
    if mysqladmin "${args[@]}" --connect-timeout=2 ping >/dev/null 2>&1; then
        return
    fi
    local daemon
    daemon=$(command -v mariadbd || command -v mysqld || true)
    [ -n "$daemon" ] || fail "no MySQL-compatible server is installed or reachable at $DEV_DATABASE_URL"
    say "starting $(basename "$daemon")"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$daemon"
    for _ in $(seq 1 60); do
        mysqladmin "${args[@]}" --connect-timeout=2 ping >/dev/null 2>&1 && return
        sleep 1
    done
    fail "the database did not come up"
}

# The pids listening on 127.0.0.1/any address at `port` (empty when it is free).
listeners() { # port
    if command -v ss >/dev/null; then
        ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
    elif command -v lsof >/dev/null; then
        lsof -nP -t -iTCP:"$1" -sTCP:LISTEN 2>/dev/null | sort -u
    fi
}

port_in_use() { # port
    [ -n "$(listeners "$1")" ] && return 0
    # Without ss or lsof, or for another user's process: try to connect.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_ports_free() {
    local port busy=()
    for port in "$FAKE_AMO_PORT" "$APP_PORT" "$NGINX_PORT"; do
        port_in_use "$port" && busy+=("$port")
    done
    if [ ${#busy[@]} -gt 0 ]; then
        fail "port(s) ${busy[*]} already in use (another stack?); choose others with" \
            "FAKE_AMO_PORT, APP_PORT and NGINX_PORT, or stop what listens there"
    fi
}

# Fails unless `pid` is alive and is the one listening on `port`: a health check that
# another stack answered proves nothing about ours.
check_ours() { # name, pid, port
    kill -0 "$2" 2>/dev/null || fail "$1 exited; see $STATE_DIR/$1.log"
    if command -v ss >/dev/null || command -v lsof >/dev/null; then
        listeners "$3" | grep -qx "$2" ||
            fail "port $3 is answered by another process than our $1 (pid $2); see $STATE_DIR/$1.log"
    fi
}

wait_for() { # url, name, pid
    for _ in $(seq 1 150); do
        kill -0 "$3" 2>/dev/null || fail "$2 exited; see $STATE_DIR/$2.log"
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    fail "$2 did not answer at $1; see $STATE_DIR/$2.log"
}

# Starts a command in a session of its own (it outlives the terminal), output to a
# log file, and records its pid.
start_bg() { # name, command...
    local name=$1
    shift
    setsid "$@" </dev/null >"$STATE_DIR/$name.log" 2>&1 &
    echo $! >"$STATE_DIR/$name.pid"
}

# The database: recreated when this stack created it, refused when it did not
# (another stack may use it) unless --reset.
prepare_database() { # reset
    local exists owner_file="$STATE_DIR/database"
    exists=$(sql "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '$DB_NAME'")
    if [ "$exists" != 0 ]; then
        if [ "$(cat "$owner_file" 2>/dev/null)" != "$DB_NAME" ] && [ "$1" != yes ]; then
            fail "database $DB_NAME exists and this stack did not create it (another stack" \
                "may be using it); pass --reset to drop it, or set DEV_DB_NAME to another name"
        fi
        say "dropping database $DB_NAME"
    fi
    sql "DROP DATABASE IF EXISTS \`$DB_NAME\`; CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    echo "$DB_NAME" >"$owner_file"
}

write_env_file() {
    cat >"$ENV_FILE" <<ENV
# Written by scripts/dev-stack.sh up for the CLI against this stack:
#   set -a; . ./.dev-stack.env; set +a; $BIN/amosync sync --full
DATABASE_URL=$DEV_DATABASE_URL/$DB_NAME
AMO_BASE_URL=http://127.0.0.1:$FAKE_AMO_PORT
AMO_ACCESS_TOKEN=fake-amo-access-token
AMO_ACCOUNT_ID=29000001
API_TOKENS=$API_TOKENS
WEBHOOK_SECRET=$WEBHOOK_SECRET
SERVER_URL=http://127.0.0.1:$NGINX_PORT
BIND_ADDR=127.0.0.1
PORT=$APP_PORT
LOG_LEVEL=info
# .env.example's sample token, on loopback: a local demo (amosync refuses it otherwise).
AMOSYNC_DEMO=true
ENV
}

up() { # [--reset]
    local reset=no
    case "${1:-}" in
        --reset) reset=yes ;;
        "") ;;
        *) fail "unknown option $1 (usage: $0 up [--reset])" ;;
    esac
    if [ -f "$STATE_DIR/amosync.pid" ]; then
        fail "already up (run '$0 down' first)"
    fi
    command -v nginx >/dev/null || fail "nginx is not installed (apt-get install nginx-light)"
    command -v mysql >/dev/null || fail "the mysql client is not installed (apt-get install mariadb-client)"
    check_ports_free
    mkdir -p "$STATE_DIR/nginx"
    start_database
    prepare_database "$reset"

    say "building release binaries into $BIN (the first build takes several minutes)"
    cargo build --release --workspace --bin amosync --bin amosync-fake-amocrm

    # The build took minutes: someone may have taken a port meanwhile.
    check_ports_free
    write_env_file
    set -a
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    set +a
    unset AMO_DOMAIN

    # From here on a failed `up` stops what it started, and nothing else.
    trap 'status=$?; [ $status = 0 ] || down >/dev/null 2>&1; exit $status' EXIT
    start_bg fake-amocrm "$BIN/amosync-fake-amocrm" --bind 127.0.0.1 --port "$FAKE_AMO_PORT"
    wait_for "http://127.0.0.1:$FAKE_AMO_PORT/_fake/state" fake-amocrm "$(cat "$STATE_DIR/fake-amocrm.pid")"
    check_ours fake-amocrm "$(cat "$STATE_DIR/fake-amocrm.pid")" "$FAKE_AMO_PORT"

    start_bg amosync "$BIN/amosync" serve
    wait_for "http://127.0.0.1:$APP_PORT/health" amosync "$(cat "$STATE_DIR/amosync.pid")"
    check_ours amosync "$(cat "$STATE_DIR/amosync.pid")" "$APP_PORT"

    sed -e "s/server amosync:3000/server 127.0.0.1:$APP_PORT/" \
        -e "s/listen 80;/listen $NGINX_PORT;/" \
        -e "s#pid /tmp/nginx.pid;#pid $STATE_DIR/nginx/nginx.pid;#" \
        -e "s#/tmp/nginx-#$STATE_DIR/nginx/#g" \
        -e "s#/dev/stdout#$STATE_DIR/nginx-access.log#g" \
        -e "s#/dev/stderr#$STATE_DIR/nginx.log#g" \
        nginx/nginx.conf >"$STATE_DIR/nginx/nginx.conf"
    nginx -c "$STATE_DIR/nginx/nginx.conf" -e "$STATE_DIR/nginx.log" </dev/null >>"$STATE_DIR/nginx.log" 2>&1 ||
        fail "nginx did not start; see $STATE_DIR/nginx.log"
    local nginx_pid
    nginx_pid=$(cat "$STATE_DIR/nginx/nginx.pid")
    wait_for "http://127.0.0.1:$NGINX_PORT/health" nginx "$nginx_pid"
    check_ours nginx "$nginx_pid" "$NGINX_PORT"

    "$BIN/amosync" webhooks subscribe >>"$STATE_DIR/amosync.log" 2>&1 ||
        say "webhook subscription failed (see $STATE_DIR/amosync.log)"

    local token="${API_TOKENS##*:}"
    cat <<INFO
[dev-stack] up
  amosync (through nginx): http://127.0.0.1:$NGINX_PORT
  fake AmoCRM:             http://127.0.0.1:$FAKE_AMO_PORT  (state: /_fake/state)
  API token:               $token
  binaries:                $BIN/amosync, $BIN/amosync-fake-amocrm
  logs:                    $STATE_DIR/*.log (nginx's access log: nginx-access.log)
  the CLI on this stack:   set -a; . ./.dev-stack.env; set +a; $BIN/amosync sync --full
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
    rm -rf "$STATE_DIR/nginx" "$ENV_FILE"
    say "down"
}

case "${1:-}" in
    up)
        shift
        up "$@"
        ;;
    down) down ;;
    *)
        echo "usage: $0 up [--reset] | down" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# A local Prefect server for demos and deployment runs (the test suite starts its own).
#
#   infra/prefect-server.sh up       start `prefect server start` in the background, wait for
#                                    /api/health, print `export PREFECT_API_URL=...`; idempotent
#   infra/prefect-server.sh down     stop it (the whole process group); idempotent
#   infra/prefect-server.sh status   exit 0 if it answers
#   infra/prefect-server.sh env      print the export line only
#
# Settings (environment): TUNEFLOW_PREFECT_PORT (4200), PREFECT_HOME (<repo>/.tuneflow/prefect-home:
# its SQLite database, profiles and logs; never ~/.prefect), VENV (<repo>/.venv),
# TUNEFLOW_PREFECT_START_TIMEOUT (seconds, 120), TUNEFLOW_PREFECT_STATE (<repo>/.tuneflow/prefect:
# pid file and server.log; give each concurrent server its own). Any PREFECT_* variable you export (e.g.
# PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://... for a PostgreSQL backend) is
# passed through. To lock the API: export PREFECT_SERVER_API_AUTH_STRING=USER:PASSWORD here and
# PREFECT_API_AUTH_STRING (the same string) for every client, worker and sensor; the /api/health probe
# this script polls stays open (tests/test_server_auth.py).
#
#   eval "$(infra/prefect-server.sh up)"     # then: prefect deployment run ..., infra/prefect-worker.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
PORT=${TUNEFLOW_PREFECT_PORT:-4200}
VENV=${VENV:-$ROOT/.venv}
export PREFECT_HOME=${PREFECT_HOME:-$ROOT/.tuneflow/prefect-home}
STATE=${TUNEFLOW_PREFECT_STATE:-$ROOT/.tuneflow/prefect}
PID_FILE=$STATE/server.pid
LOG_FILE=$STATE/server.log
TIMEOUT=${TUNEFLOW_PREFECT_START_TIMEOUT:-120}
API_URL=http://$HOST:$PORT/api

log() { printf '[prefect-server] %s\n' "$*" >&2; }
die() { printf '[prefect-server] ERROR: %s\n' "$*" >&2; exit 1; }

# alive and not a zombie (an unreaped zombie still answers kill -0; seen where PID 1 reaps lazily)
pid_alive() {
    [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null \
        && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}
group_alive() {  # any non-zombie process left in process group $1
    ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

server_pid() {
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'prefect' || return 1
    echo "$pid"
}

healthy() {  # /api/health answers 200 with `true`
    local body
    if command -v curl >/dev/null 2>&1; then
        body=$(curl -sf -m 3 --noproxy '*' "$API_URL/health" 2>/dev/null) || return 1
    else
        body=$("$VENV/bin/python" -c "import sys, urllib.request as u
o = u.build_opener(u.ProxyHandler({}))
print(o.open(sys.argv[1], timeout=3).read().decode())" "$API_URL/health" 2>/dev/null) || return 1
    fi
    [[ "$body" == true ]]
}

print_env() { echo "export PREFECT_API_URL=$API_URL"; }

up() {
    mkdir -p "$STATE" "$PREFECT_HOME"
    local pid
    if pid=$(server_pid); then
        if healthy; then
            log "already running (pid $pid) at $API_URL"; print_env; return 0
        fi
        log "pid $pid is alive but $API_URL/health does not answer yet; waiting"
    else
        [[ -x "$VENV/bin/prefect" ]] || die "$VENV/bin/prefect not found: run 'make venv' first"
        if port_open "$PORT"; then
            die "port $HOST:$PORT is taken by another process; stop it or set TUNEFLOW_PREFECT_PORT"
        fi
        log "starting prefect server on $HOST:$PORT (PREFECT_HOME=$PREFECT_HOME, log: $LOG_FILE)"
        # own session/process group: `down` signals the group (the server spawns children);
        # all fds redirected so make/CI never wait on it. The server itself must not point at an
        # API URL of its own (PREFECT_API_URL is for clients), hence `env -u`.
        PREFECT_SERVER_ANALYTICS_ENABLED=false \
            setsid env -u PREFECT_API_URL "$VENV/bin/prefect" server start --host "$HOST" --port "$PORT" \
            </dev/null >>"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
    fi
    local deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if healthy; then
            log "ready (pid $(cat "$PID_FILE")) at $API_URL"; print_env; return 0
        fi
        if ! pid_alive "$(cat "$PID_FILE" 2>/dev/null)"; then
            tail -n 40 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "prefect server exited (log tail above)"
        fi
        sleep 0.5
    done
    tail -n 40 "$LOG_FILE" >&2 || true
    down
    die "prefect server did not become healthy within ${TIMEOUT}s"
}

down() {
    local pid i
    if ! pid=$(server_pid); then
        rm -f "$PID_FILE"; log "not running"; return 0
    fi
    log "stopping (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do   # up to 15 s for a graceful shutdown
        group_alive "$pid" || break
        sleep 0.25
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status)
        if healthy; then echo "prefect-server: up   $API_URL"; else echo "prefect-server: down"; exit 1; fi ;;
    env) print_env ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac

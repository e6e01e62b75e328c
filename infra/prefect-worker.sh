#!/usr/bin/env bash
# A Prefect `process` worker for the `tuneflow-process` work pool (creates the pool if missing).
#
#   infra/prefect-worker.sh [run]   create the pool if needed, then run the worker in the foreground
#   infra/prefect-worker.sh up      same, in the background (pid/log under .tuneflow/prefect/)
#   infra/prefect-worker.sh down    stop the background worker
#
# Needs a Prefect server: PREFECT_API_URL from the environment, else the one
# infra/prefect-server.sh runs (http://127.0.0.1:${TUNEFLOW_PREFECT_PORT:-4200}/api).
# A server locked with PREFECT_SERVER_API_AUTH_STRING needs PREFECT_API_AUTH_STRING exported here; the
# worker and the flow runs it starts inherit it (like every PREFECT_* and TUNEFLOW_* variable).
# Settings: TUNEFLOW_WORK_POOL (tuneflow-process), TUNEFLOW_WORKER_LIMIT (max concurrent flow runs,
# default unlimited), PREFECT_HOME (<repo>/.tuneflow/prefect-home), VENV (<repo>/.venv),
# TUNEFLOW_PREFECT_STATE (<repo>/.tuneflow/prefect: pid file and log of `up`).
# The worker runs flow runs as subprocesses from the repository root, so `flows`/`tasks` import.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
POOL=${TUNEFLOW_WORK_POOL:-tuneflow-process}
export PREFECT_HOME=${PREFECT_HOME:-$ROOT/.tuneflow/prefect-home}
export PREFECT_API_URL=${PREFECT_API_URL:-http://127.0.0.1:${TUNEFLOW_PREFECT_PORT:-4200}/api}
STATE=${TUNEFLOW_PREFECT_STATE:-$ROOT/.tuneflow/prefect}
PID_FILE=$STATE/worker-$POOL.pid
LOG_FILE=$STATE/worker-$POOL.log
PREFECT=$VENV/bin/prefect

log() { printf '[prefect-worker] %s\n' "$*" >&2; }
die() { printf '[prefect-worker] ERROR: %s\n' "$*" >&2; exit 1; }

[[ -x "$PREFECT" ]] || die "$PREFECT not found: run 'make venv' first"
mkdir -p "$STATE" "$PREFECT_HOME"
cd "$ROOT"

worker_cmd=("$PREFECT" worker start --pool "$POOL" --type process --name "tuneflow-$(hostname)-$$"
            --install-policy never)
if [[ -n "${TUNEFLOW_WORKER_LIMIT:-}" ]]; then worker_cmd+=(--limit "$TUNEFLOW_WORKER_LIMIT"); fi

ensure_pool() {
    if "$PREFECT" --no-prompt work-pool inspect "$POOL" >/dev/null 2>&1; then
        log "work pool '$POOL' exists ($PREFECT_API_URL)"
    else
        log "creating work pool '$POOL' (type process) at $PREFECT_API_URL"
        "$PREFECT" --no-prompt work-pool create "$POOL" --type process >/dev/null \
            || die "could not create work pool '$POOL': is the server up? (infra/prefect-server.sh up)"
    fi
}

group_alive() {  # any non-zombie process left in process group $1
    ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

worker_pid() {
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'worker start' || return 1
    echo "$pid"
}

case "${1:-run}" in
    run)
        ensure_pool
        log "starting: ${worker_cmd[*]}"
        exec "${worker_cmd[@]}"
        ;;
    up)
        if pid=$(worker_pid); then log "already running (pid $pid)"; exit 0; fi
        ensure_pool
        log "starting in the background (log: $LOG_FILE)"
        setsid "${worker_cmd[@]}" </dev/null >>"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
        sleep 3
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            tail -n 30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "worker exited (log tail above)"
        fi
        log "running (pid $(cat "$PID_FILE")), polling pool '$POOL'"
        ;;
    down)
        if ! pid=$(worker_pid); then rm -f "$PID_FILE"; log "not running"; exit 0; fi
        log "stopping (pid $pid)"
        # The prefect CLI turns SIGTERM into a graceful stop that can take long; a first SIGINT is
        # graceful too, a second one makes it SIGKILL its worker. So: INT, wait 10 s, INT, KILL.
        kill -INT -- "-$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do group_alive "$pid" || break; sleep 0.25; done
        if group_alive "$pid"; then
            kill -INT -- "-$pid" 2>/dev/null || true
            for ((i = 0; i < 20; i++)); do group_alive "$pid" || break; sleep 0.25; done
        fi
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$PID_FILE"
        ;;
    *) echo "usage: $0 [run|up|down]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Local services for tests and demos, all on 127.0.0.1, state under .tuneflow/services/.
#
#   infra/services.sh up       start PostgreSQL (port 55432) and a moto S3 server (port 55000); idempotent
#   infra/services.sh down     stop both; idempotent; leaves nothing running (data kept)
#   infra/services.sh status   exit 0 if both are up, 1 otherwise
#   infra/services.sh env      print `export` lines for the tests: eval "$(infra/services.sh env)"
#   infra/services.sh purge    down, then delete all service state (the PostgreSQL cluster)
#
# Settings (environment): TUNEFLOW_PG_PORT (55432), TUNEFLOW_S3_PORT (55000),
# TUNEFLOW_SERVICES_DIR (<repo>/.tuneflow/services), VENV (<repo>/.venv, for moto_server),
# PG_BIN (directory holding initdb/pg_ctl; found automatically on Debian).
#
# PostgreSQL: a private cluster made with plain initdb and run with pg_ctl (not
# pg_createcluster/pg_ctlcluster, which register the cluster under /etc/postgresql and log to
# /var/log: global state that outlives `make clean` and collides between checkouts). The server
# refuses to run as root, so as root every server-side command runs as the `postgres` OS user
# (runuser) and the data directory is owned by it; as a normal user it runs as that user.
# TCP only (no Unix socket: its path length limit breaks in deep checkouts). Durability is
# switched off (fsync, synchronous_commit, full_page_writes): it is a throwaway test cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
PG_PORT=${TUNEFLOW_PG_PORT:-55432}
S3_PORT=${TUNEFLOW_S3_PORT:-55000}
STATE=${TUNEFLOW_SERVICES_DIR:-$ROOT/.tuneflow/services}
VENV=${VENV:-$ROOT/.venv}
PG_DB=tuneflow
PG_USER=tuneflow
PG_PASSWORD=tuneflow

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ----------------------------------------------------------------------------- helpers

port_open() {  # port_open PORT -> 0 if something accepts TCP connections on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

port_owner() {  # best-effort description of who listens on a port
    if command -v ss >/dev/null 2>&1; then
        ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /' || true
    fi
}

# alive and not a zombie (an unreaped zombie still answers kill -0; seen where PID 1 reaps lazily)
pid_alive() {
    [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null \
        && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# ----------------------------------------------------------------------------- PostgreSQL

PG_LINK=$STATE/pg   # the cluster directory, or a link to it (see pg_prepare_dir)
pg_paths() {
    # Always work on the real path: when $STATE/pg is a link (the postgres user cannot traverse
    # the checkout), the link itself is out of the postgres user's reach.
    PG_DIR=$PG_LINK
    if [[ -L "$PG_LINK" ]]; then PG_DIR=$(readlink -f "$PG_LINK"); fi
    PGDATA=$PG_DIR/data
    PG_LOG=$PG_DIR/postgres.log
    PG_SUPERPW_FILE=$PG_DIR/superuser.pw   # random password of the `postgres` superuser (mode 600)
}
pg_paths

find_pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] || die "PG_BIN=$PG_BIN has no initdb/pg_ctl"
        echo "$PG_BIN"; return
    fi
    local d
    if d=$(command -v initdb 2>/dev/null) && [[ -x "$(dirname "$d")/pg_ctl" ]]; then
        dirname "$d"; return
    fi
    # Debian/Ubuntu keep the server binaries off PATH; take the newest major installed
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return; fi
    d=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return; fi
    die "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql, or set PG_BIN"
}

# Server-side commands run as the postgres OS user when we are root (the server refuses root).
# `cd /` so the postgres user is never left in a directory it cannot read (e.g. under /root).
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

psql_bin() {
    if command -v psql >/dev/null 2>&1; then command -v psql; else echo "$(find_pg_bin)/psql"; fi
}

pg_superuser_psql() {  # pg_superuser_psql ARGS... -> psql as the bootstrap superuser over TCP
    PGPASSWORD=$(cat "$PG_SUPERPW_FILE") PGCONNECT_TIMEOUT=5 \
        "$(psql_bin)" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_check() {  # the check tests will rely on: the tuneflow user can log in to its database
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 \
        "$(psql_bin)" -X -qtA -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c 'select 1' 2>/dev/null \
        | grep -qx 1
}

pg_running() {  # our cluster's postmaster is up
    [[ -f "$PGDATA/PG_VERSION" ]] || return 1
    local bin; bin=$(find_pg_bin)
    as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

pg_prepare_dir() {
    mkdir -p "$STATE"
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user to run the server (install postgresql)"
        # The postgres user must reach the data directory. A checkout under /root (mode 700) is
        # not reachable: keep the cluster in /tmp then, linked from .tuneflow/services/pg.
        if [[ ! -e "$PG_LINK" ]] && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
            local alt
            alt=${TMPDIR:-/tmp}/tuneflow-pg-$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)
            log "postgres user cannot reach $STATE; cluster lives in $alt (linked as $PG_LINK)"
            mkdir -p "$alt"
            ln -sfn "$alt" "$PG_LINK"
            pg_paths
        fi
        mkdir -p "$PG_DIR"
        chown postgres: "$PG_DIR"
        chmod 700 "$PG_DIR"
        runuser -u postgres -- test -w "$PG_DIR/" 2>/dev/null \
            || die "the postgres OS user cannot write $PG_DIR (check the permissions of its parents)"
    else
        mkdir -p "$PG_DIR"; chmod 700 "$PG_DIR"
    fi
}

pg_init() {
    local bin=$1
    log "PostgreSQL: initdb $PGDATA"
    # random superuser password, readable by us (root or the user) and by the server's user
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PG_SUPERPW_FILE")
    if [[ $EUID -eq 0 ]]; then chown postgres: "$PG_SUPERPW_FILE"; fi
    rm -rf "$PGDATA"
    as_pg "$bin/initdb" -D "$PGDATA" -U postgres --pwfile="$PG_SUPERPW_FILE" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync \
        >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed (log above)"; }
    as_pg sh -c "cat >>'$PGDATA/postgresql.conf'" <<'EOF'

# ---- tuneflow test cluster (infra/services.sh) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
include_if_exists = 'tuneflow-port.conf'
EOF
}

pg_up() {
    local bin; bin=$(find_pg_bin)
    pg_prepare_dir
    [[ -f "$PGDATA/PG_VERSION" && -s "$PG_SUPERPW_FILE" ]] || pg_init "$bin"

    if pg_running; then
        log "PostgreSQL: already running ($PGDATA)"
    else
        if port_open "$PG_PORT"; then
            port_owner "$PG_PORT" >&2
            die "port $HOST:$PG_PORT is taken by another process; stop it or set TUNEFLOW_PG_PORT"
        fi
        echo "port = $PG_PORT" | as_pg sh -c "cat >'$PGDATA/tuneflow-port.conf'"
        log "PostgreSQL: starting on $HOST:$PG_PORT (log: $PG_LOG)"
        as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
            || { tail -n 30 "$PG_LOG" >&2 || true; die "PostgreSQL did not start (log tail above)"; }
    fi

    # role and database, idempotently; CREATEDB so tests may make throwaway databases, CREATEROLE
    # so they may make throwaway roles (tests/test_secrets.py: a role whose password is a canary)
    pg_superuser_psql <<EOF || die "could not create role/database (is another server on $PG_PORT?)"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
    pg_check || die "PostgreSQL is up but $PG_USER cannot log in to $PG_DB on $HOST:$PG_PORT"
    log "PostgreSQL: ready at postgresql://$PG_USER:***@$HOST:$PG_PORT/$PG_DB"
}

pg_down() {
    [[ -f "$PGDATA/PG_VERSION" ]] || { log "PostgreSQL: no cluster, nothing to stop"; return 0; }
    if pg_running; then
        local bin; bin=$(find_pg_bin)
        log "PostgreSQL: stopping"
        as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null \
            || as_pg "$bin/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null
    else
        log "PostgreSQL: not running"
    fi
}

# ----------------------------------------------------------------------------- moto (S3)

MOTO_DIR=$STATE/moto
MOTO_PID=$MOTO_DIR/moto.pid
MOTO_LOG=$MOTO_DIR/moto.log

moto_pid() {  # print the pid from the pid file if that process is alive and is moto_server
    local pid
    pid=$(cat "$MOTO_PID" 2>/dev/null || true)
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server || return 1
    echo "$pid"
}

http_answers() {  # any HTTP status back from URL
    local url=$1 code
    if command -v curl >/dev/null 2>&1; then
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' --noproxy '*' "$url" || true)
        [[ -n "$code" && "$code" != 000 ]]
    else
        "$VENV/bin/python" - "$url" <<'EOF'
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    opener.open(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
    fi
}

moto_up() {
    mkdir -p "$MOTO_DIR"
    local pid url="http://$HOST:$S3_PORT"
    if pid=$(moto_pid); then
        if http_answers "$url/moto-api/"; then
            log "moto S3: already running (pid $pid) at $url"; return 0
        fi
        log "moto S3: pid $pid alive but not answering; restarting"
        moto_down
    fi
    [[ -x "$VENV/bin/moto_server" ]] \
        || die "$VENV/bin/moto_server not found: run 'make venv' first (moto[server] is in the test extra)"
    if port_open "$S3_PORT"; then
        port_owner "$S3_PORT" >&2
        die "port $HOST:$S3_PORT is taken by another process; stop it or set TUNEFLOW_S3_PORT"
    fi
    log "moto S3: starting on $url (log: $MOTO_LOG)"
    # setsid: own session and process group, so a Ctrl-C in the caller's terminal does not hit it
    # and `down` can signal the whole group; all fds away from the caller so make/CI never wait on it
    setsid "$VENV/bin/moto_server" -H "$HOST" -p "$S3_PORT" </dev/null >>"$MOTO_LOG" 2>&1 &
    echo $! >"$MOTO_PID"
    local i
    for ((i = 0; i < 120; i++)); do   # up to 30 s
        if http_answers "$url/moto-api/"; then
            log "moto S3: ready (pid $(cat "$MOTO_PID"))"; return 0
        fi
        if ! pid_alive "$(cat "$MOTO_PID")"; then
            tail -n 30 "$MOTO_LOG" >&2 || true
            rm -f "$MOTO_PID"
            die "moto_server exited (log tail above)"
        fi
        sleep 0.25
    done
    tail -n 30 "$MOTO_LOG" >&2 || true
    moto_down
    die "moto_server did not answer on $url within 30 s"
}

moto_down() {
    local pid i
    if ! pid=$(moto_pid); then
        rm -f "$MOTO_PID"; log "moto S3: not running"; return 0
    fi
    log "moto S3: stopping (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        pid_alive "$pid" || break
        sleep 0.25
    done
    if pid_alive "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$MOTO_PID"
}

# ----------------------------------------------------------------------------- commands

cmd_env() {
    cat <<EOF
export TUNEFLOW_TEST_PG_URL=postgresql+psycopg2://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB
export TUNEFLOW_TEST_S3_ENDPOINT=http://$HOST:$S3_PORT
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export NO_PROXY=$(with_local "${NO_PROXY:-}")
export no_proxy=$(with_local "${no_proxy:-}")
EOF
}

with_local() {  # add 127.0.0.1 and localhost to a comma list unless present (proxies must not see them)
    local list=$1 h
    for h in "$HOST" localhost; do
        [[ ",$list," == *",$h,"* ]] || list=${list:+$list,}$h
    done
    echo "$list"
}

cmd_status() {
    local ok=0 pid
    if pg_running && pg_check; then
        echo "postgres: up   $HOST:$PG_PORT ($PGDATA)"
    else
        echo "postgres: down"; ok=1
    fi
    if pid=$(moto_pid) && http_answers "http://$HOST:$S3_PORT/moto-api/"; then
        echo "moto-s3:  up   http://$HOST:$S3_PORT (pid $pid)"
    else
        echo "moto-s3:  down"; ok=1
    fi
    return $ok
}

case "${1:-}" in
    up)
        # on any failure (set -e / die), do not leave a half-started set behind
        trap 'rc=$?; if ((rc)); then log "up failed; stopping what was started"; moto_down || true; pg_down || true; fi' EXIT
        pg_up
        moto_up
        trap - EXIT
        ;;
    down)
        rc=0
        ( moto_down ) || rc=1
        ( pg_down ) || rc=1
        exit $rc
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    purge)
        "$0" down || true
        if [[ -L "$PG_LINK" ]]; then rm -rf "$(readlink -f "$PG_LINK")"; fi
        rm -rf "$STATE"
        log "removed $STATE"
        ;;
    *)
        echo "usage: $0 up|down|status|env|purge" >&2
        exit 2
        ;;
esac

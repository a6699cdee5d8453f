# Sourced by the other scripts: makes sure Python 3.11+ with venv exists and .venv is set up.
# On a fresh Debian machine it installs python3 and python3-venv (as root, or with sudo).
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {
    # Installs the named Debian packages that are missing; one apt-get update per run.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "${SEALOG_APT_UPDATED:-}" ]; then
        as_root apt-get update -qq
        export SEALOG_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

ensure_venv() {
    # $1: pip extras to install, e.g. "[test]" (may be empty).
    if ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        apt_install python3 python3-venv python3-pip
    fi
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${1:-}"
}

# The PostgreSQL server of one test run: a cluster in /tmp/sealog-pg-<pid of the run>.XXXXXX
# (/tmp, not the checkout, because the postgres user may not be able to enter a checkout in
# /root), owned by `postgres` when we are root (PostgreSQL refuses to run as root), else by us.
TEST_POSTGRES_DIR=""
TEST_POSTGRES_BIN=""

postgres_bin_dir() {
    # Debian's newest installed server: /usr/lib/postgresql/<version>/bin (nothing if none).
    find /usr/lib/postgresql -path '*/bin/pg_ctl' -printf '%h\n' 2>/dev/null | sort -V | tail -n 1 || true
}

as_postgres_owner() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

start_test_postgres() {
    # Exports SEALOG_TEST_POSTGRES_URL for the tests: a URL the caller set is kept as it is
    # and nothing starts; otherwise a server of this run's own, stopped by an EXIT trap.
    # Needs Debian's postgresql package and python3 (after ensure_venv).
    if [ -n "${SEALOG_TEST_POSTGRES_URL:-}" ]; then
        echo "PostgreSQL for the tests: $SEALOG_TEST_POSTGRES_URL (SEALOG_TEST_POSTGRES_URL)" >&2
        return 0
    fi
    TEST_POSTGRES_BIN=$(postgres_bin_dir)
    if [ -z "$TEST_POSTGRES_BIN" ]; then
        echo "no PostgreSQL server under /usr/lib/postgresql/<version>/bin: apt-get install postgresql" >&2
        return 1
    fi
    local owner
    owner=$(if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi)
    remove_stale_test_postgres "$owner"
    TEST_POSTGRES_DIR=$(mktemp -d "/tmp/sealog-pg-$$.XXXXXX")
    trap stop_test_postgres EXIT
    [ "$owner" = "$(id -un)" ] || chown "$owner:" "$TEST_POSTGRES_DIR"
    local data="$TEST_POSTGRES_DIR/data" log="$TEST_POSTGRES_DIR/server.log"
    if ! as_postgres_owner "$TEST_POSTGRES_BIN/initdb" -D "$data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$TEST_POSTGRES_DIR/initdb.log" 2>&1; then
        cat "$TEST_POSTGRES_DIR/initdb.log" >&2
        return 1
    fi
    # Only for tests: nothing here must outlive a crash, so nothing waits for the disk.
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$TEST_POSTGRES_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    local port attempt
    for attempt in 1 2 3; do
        # A port the kernel hands out as free (never one in use, so never a running 5432);
        # another program may take it before the server binds it, hence the retries.
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        if as_postgres_owner "$TEST_POSTGRES_BIN/pg_ctl" -D "$data" -l "$log" -o "-p $port" \
            -w -t 60 start >"$TEST_POSTGRES_DIR/pg_ctl.log" 2>&1; then
            export SEALOG_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/postgres"
            echo "PostgreSQL for the tests: $SEALOG_TEST_POSTGRES_URL (its own, in $TEST_POSTGRES_DIR)" >&2
            return 0
        fi
        grep -q "could not bind" "$log" || break
    done
    echo "PostgreSQL for the tests did not start; its log ($log):" >&2
    cat "$TEST_POSTGRES_DIR/pg_ctl.log" "$log" >&2
    return 1
}

stop_test_postgres() {
    # Stops the server start_test_postgres started and removes its folder.
    [ -n "$TEST_POSTGRES_DIR" ] || return 0
    if [ -f "$TEST_POSTGRES_DIR/data/postmaster.pid" ]; then
        as_postgres_owner "$TEST_POSTGRES_BIN/pg_ctl" -D "$TEST_POSTGRES_DIR/data" -m fast -w \
            stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TEST_POSTGRES_DIR"
    TEST_POSTGRES_DIR=""
}

remove_stale_test_postgres() {
    # $1: the user the servers run as. Stops and removes the clusters of runs that are gone
    # (killed before their trap ran); a server is signalled only if its command line names
    # that cluster, so a PID reused since (the machine's own PostgreSQL, say) is never hit.
    local dir run pid
    for dir in /tmp/sealog-pg-*.*; do
        [ -d "$dir" ] && [ "$(stat -c %U "$dir")" = "$1" ] || continue
        run=${dir#/tmp/sealog-pg-}
        run=${run%%.*}
        [ -d "/proc/$run" ] && continue
        pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $dir/data"; then
            echo "stopping the PostgreSQL server a killed test run left in $dir" >&2
            as_postgres_owner "$TEST_POSTGRES_BIN/pg_ctl" -D "$dir/data" -m immediate -w \
                stop >/dev/null 2>&1 || true
        fi
        rm -rf "$dir" 2>/dev/null || true  # another run may be removing it too
    done
}

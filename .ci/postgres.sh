#!/usr/bin/env bash
# Starts (or reuses) a throwaway PostgreSQL server for tests/external_postgres.rs and prints
#   export TENANT_OPERATOR_TEST_PG_URL=postgresql://admin:PASSWORD@127.0.0.1:PORT/postgres?sslmode=disable
# on stdout, so callers can `eval "$(.ci/postgres.sh)"`. Everything else goes to stderr.
#
# TCP logins need a password (scram-sha-256): the tests prove that a tenant's login role
# cannot open another tenant's database, which "trust" authentication would make meaningless.
#
# Environment: TENANT_OPERATOR_PG_DIR (default /tmp/tenant-operator-pg) holds the cluster,
# its socket, log, the generated admin password and TLS files (TENANT_OPERATOR_TEST_PG_CA
# names the CA that signed the server certificate); `.ci/postgres.sh stop` stops the server.
set -euo pipefail

base=${TENANT_OPERATOR_PG_DIR:-/tmp/tenant-operator-pg}
data=$base/data
state=$base/admin.env

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    # Debian keeps server binaries out of PATH, one directory per major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! bindir=$(find_bindir); then
    log "PostgreSQL server binaries not found; installing Debian's postgresql package"
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: install the postgresql package first"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # The package's own cluster is not used; policy-rc.d keeps it from being started.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.tenant-operator
    chmod +x /usr/sbin/policy-rc.d.tenant-operator
    [ -e /usr/sbin/policy-rc.d ] || cp /usr/sbin/policy-rc.d.tenant-operator /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends postgresql >&2
    if cmp -s /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.tenant-operator; then rm -f /usr/sbin/policy-rc.d; fi
    rm -f /usr/sbin/policy-rc.d.tenant-operator
    bindir=$(find_bindir)
fi

# initdb and postgres refuse to run as root.
run_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

is_running() { run_as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
    if [ -d "$data" ] && is_running; then run_as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >&2; fi
    exit 0
fi

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p "$base"
if [ "$(id -u)" -eq 0 ]; then run_as_owner true; chown postgres "$base"; fi
chmod 700 "$base"

if [ ! -f "$state" ] || [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data" "$state"
    password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    pwfile=$base/pwfile
    (umask 077; printf '%s\n' "$password" >"$pwfile")
    [ "$(id -u)" -ne 0 ] || chown postgres "$pwfile"
    # The bootstrap superuser is named admin and gets the generated password; local socket
    # connections (used only by this script) use peer authentication.
    run_as_owner "$bindir/initdb" -D "$data" -U admin --pwfile="$pwfile" \
        --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2 ||
        run_as_owner "$bindir/initdb" -D "$data" -U admin --pwfile="$pwfile" \
            --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C >&2
    rm -f "$pwfile"
    (umask 077; printf 'password=%s\n' "$password" >"$state")
fi
password=$(sed -n 's/^password=//p' "$state")

# A private CA and a server certificate for 127.0.0.1, so SslMode::Require (which verifies
# the certificate) is tested too; skipped where openssl is missing.
tls_options=
if command -v openssl >/dev/null 2>&1; then
    if [ ! -f "$base/server.key" ] || [ ! -f "$base/ca.crt" ]; then
        (
            cd "$base"
            openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=tenant-operator-test-ca \
                -keyout ca.key -out ca.crt >/dev/null 2>&1
            openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr >/dev/null 2>&1
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile server.ext -out server.crt >/dev/null 2>&1
            rm -f server.csr server.ext ca.key ca.srl
            chmod 600 server.key
        )
        [ "$(id -u)" -ne 0 ] || chown postgres "$base/server.key" "$base/server.crt"
    fi
    tls_options="-c ssl=on -c ssl_cert_file=$base/server.crt -c ssl_key_file=$base/server.key"
fi

if ! is_running; then
    port=$(( 20000 + RANDOM % 20000 ))
    while ! port_is_free "$port"; do port=$(( port + 1 )); done
    run_as_owner "$bindir/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$base -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off $tls_options" >&2
    log "server started on 127.0.0.1:$port (log: $base/server.log)"
fi
port=$(sed -n '4p' "$data/postmaster.pid" 2>/dev/null || true)
port=${port##* }
[ -n "$port" ] || { log "cannot read the port from $data/postmaster.pid"; exit 1; }

[ -z "$tls_options" ] || echo "export TENANT_OPERATOR_TEST_PG_CA=$base/ca.crt"
echo "export TENANT_OPERATOR_TEST_PG_URL=postgresql://admin:${password}@127.0.0.1:${port}/postgres?sslmode=disable"

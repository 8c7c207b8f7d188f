#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL server for the `postgres` tests and print its URL.
# Prints nothing when no server can be had; the postgres tests are then skipped.
set -u
dir=${PG_TEST_DIR:-/tmp/vistudio-pg-test}
port=${PG_TEST_PORT:-54329}
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(find_bin)
if [ -z "$bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }; } >/dev/null 2>&1
    bin=$(find_bin)
fi
[ -n "$bin" ] || exit 0
if [ "$(id -u)" = 0 ]; then
    user=postgres
    run() { su postgres -s /bin/sh -c "$1"; }
else
    user=$(id -un)
    run() { sh -c "$1"; }
fi
if ! run "$bin/pg_ctl -D $dir status" >/dev/null 2>&1; then
    rm -rf "$dir" && mkdir -p "$dir" || exit 0
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    run "$bin/initdb -D $dir -A trust -U $user" >/dev/null 2>&1 || exit 0
    run "$bin/pg_ctl -D $dir -o \"-p $port -k $dir -c listen_addresses=''\" -l $dir/log -w start" >/dev/null 2>&1 || exit 0
fi
echo "postgresql+psycopg://$user@/postgres?host=$dir&port=$port"

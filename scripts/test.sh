#!/usr/bin/env bash
# The test suite, as the README's second command and as .ci/run call it.
#
# The suite needs two things beside cargo, and this script sees to both before
# it runs `cargo test --workspace` (any arguments are passed on to it, e.g.
# `scripts/test.sh run_cli` or `scripts/test.sh --no-run`):
#
#   * PostgreSQL on 127.0.0.1:5432, user postgres without a password, database
#     `test` (the storage tests make and drop their own schema in it). A stopped
#     local server is started; a missing database `test` is created; a machine
#     without PostgreSQL gets Debian's package, set up as above (password-less
#     loopback access is granted only on a server this script installed).
#     With ASDSWEEP_TEST_PG set, the tests use that server instead and this
#     script leaves PostgreSQL alone.
#   * Headless Chromium at /usr/bin/chromium (the report rendering test):
#     installed from Debian's package when missing.
#
# After the cargo tests (when no arguments were given) it runs the Python client's tests
# against a live coordinator (scripts/test-python-client.sh: a venv under target/).
#
# Installing needs root (or sudo); everything else runs as the calling user.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "scripts/test.sh: $*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "needs root to run '$*' (run as root, install sudo, or do it by hand)"
  fi
}

apt_updated=
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* here: no apt-get (install it by hand)"
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }

# psql as the postgres role over loopback TCP, the way the tests connect.
pg_query() {
  PGCONNECT_TIMEOUT=5 psql -X -q -t -A -v ON_ERROR_STOP=1 \
    "postgres://postgres@127.0.0.1:5432/$1" -c "$2"
}

ensure_postgres() {
  local installed=
  if ! pg_ready; then
    if ! command -v pg_ctlcluster >/dev/null; then
      say "PostgreSQL is not installed; installing Debian's postgresql"
      apt_install postgresql
      installed=1
    fi
    local version
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "PostgreSQL is installed but has no cluster under /etc/postgresql"
    say "PostgreSQL $version is not answering on 127.0.0.1:5432; starting its main cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || die "PostgreSQL $version did not come up on 127.0.0.1:5432 (see /var/log/postgresql/)"
    if [ -n "$installed" ]; then
      # A server installed just now for the tests: let the postgres role in
      # over loopback without a password, as the test machines are set up.
      local hba
      hba=$(as_root runuser -u postgres -- psql -X -q -t -A -c 'SHOW hba_file')
      as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
      as_root runuser -u postgres -- psql -X -q -c 'SELECT pg_reload_conf()' >/dev/null
    fi
  fi
  pg_query postgres 'SELECT 1' >/dev/null ||
    die "PostgreSQL on 127.0.0.1:5432 does not let user postgres in without a password (psql's error above); allow it (pg_hba.conf: host all postgres 127.0.0.1/32 trust) or point ASDSWEEP_TEST_PG at a server the tests may use"
  if [ "$(pg_query postgres "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = 0 ]; then
    say "creating database test on 127.0.0.1:5432"
    pg_query postgres 'CREATE DATABASE test'
  fi
}

if [ -z "${ASDSWEEP_TEST_PG:-}" ]; then
  ensure_postgres
fi

if [ ! -x /usr/bin/chromium ] && [ ! -x /usr/bin/chromium-browser ]; then
  say "installing Debian's chromium for the report rendering test"
  apt_install chromium
fi

cargo test --workspace "$@"

# The Python client against a live coordinator (the binary cargo test just built); only for
# the whole suite, not when arguments pick some tests.
if [ $# -eq 0 ]; then
  scripts/test-python-client.sh
fi

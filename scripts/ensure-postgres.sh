#!/usr/bin/env bash
# Makes sure the PostgreSQL server programs the tests use are installed: the key service's API
# tests and the e2e tests run every PostgreSQL case on a throwaway cluster of their own (initdb +
# pg_ctl, see tests/testdb) unless KEYGATE_TEST_DATABASE_URL names a server. Installs Debian's
# `postgresql` package when they are missing and this is root on a Debian-like machine.
set -euo pipefail

# psql makes and drops each test's database, also on a KEYGATE_TEST_DATABASE_URL server.
have() {
  command -v "$1" >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
have_tools() {
  have psql && { [ -n "${KEYGATE_TEST_DATABASE_URL:-}" ] || { have initdb && have pg_ctl; }; }
}

have_tools && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "ensure-postgres: installing postgresql (apt-get)" >&2
  apt-get update -qq
  # The package's own cluster is not needed: the tests start theirs.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  have_tools && exit 0
fi
echo "ensure-postgres: initdb, pg_ctl or psql is missing: install PostgreSQL (e.g. sudo apt-get install postgresql)" >&2
echo "                 or set KEYGATE_TEST_DATABASE_URL=postgres://user@host:port/db" >&2
exit 1

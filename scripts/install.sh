#!/usr/bin/env bash
# Install authsvc and what it needs on this machine: Postgres server binaries (for the embedded
# default database) and, with --test, the test tools, Debian's Chromium for the browser tests and
# Debian's redis-server for the rate-limit tests against Redis, and Debian's PgBouncer for
# the tests behind a connection pooler.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  packages+=(postgresql)
fi
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  packages+=(chromium)
fi
if [ "${1:-}" = "--test" ] && ! command -v redis-server >/dev/null; then
  packages+=(redis-server)
fi
# The tests run the service behind Debian's PgBouncer in transaction mode (tests/pgbouncer.py).
if [ "${1:-}" = "--test" ] && [ ! -x /usr/sbin/pgbouncer ] && ! command -v pgbouncer >/dev/null; then
  packages+=(pgbouncer)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"
# pyenv installs console scripts behind shims; make `authsvc` callable right away.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

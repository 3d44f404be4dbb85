#!/usr/bin/env bash
# Install authsvc and what it needs on this machine: Postgres server binaries (for the embedded
# default database). With --test, also what the test suite runs against: Debian's Chromium (the
# browser journeys), redis-server (rate limits in Redis), PgBouncer (the service behind a
# transaction-mode pooler) and wrk (the benchmark's smoke test). With --bench, wrk, PgBouncer
# (the pooled rows) and the benchmark's Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
say() { echo "install: $*" >&2; }

packages=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  packages+=(postgresql)
fi
if [ "$mode" = "--test" ]; then
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  command -v redis-server >/dev/null || packages+=(redis-server)
fi
if [ "$mode" = "--test" ] || [ "$mode" = "--bench" ]; then
  [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || packages+=(pgbouncer)
  command -v wrk >/dev/null || packages+=(wrk)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${packages[*]} (this takes a minute or two)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
else
  say "Debian packages already present"
fi

extras=""
[ "$mode" = "--test" ] && extras="[test]"
[ "$mode" = "--bench" ] && extras="[bench]"
say "installing authsvc${extras} and its Python dependencies with pip (about half a minute)"
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"
# pyenv installs console scripts behind shims; make `authsvc` callable right away.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
say "done: $(command -v authsvc || echo 'authsvc') is installed"

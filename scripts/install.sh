#!/usr/bin/env bash
# Install authsvc and what it needs on this machine: Postgres server binaries (for the embedded
# default database) and, with --test, the test tools and Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  packages+=(postgresql)
fi
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  packages+=(chromium)
fi
# bench: the load client of `python -m bench` (the suite runs it once, at tiny size).
if { [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; } && ! command -v wrk >/dev/null; then
  packages+=(wrk)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
[ "${1:-}" = "--bench" ] && extras="[bench]"
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"
# pyenv installs console scripts behind shims; make `authsvc` callable right away.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (tests/ and e2e/) on real Postgres.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
exec python3 -m pytest "$@"

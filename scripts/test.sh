#!/usr/bin/env bash
# The test command of the README: set-up (if needed), the API fuzzer and the
# PostgreSQL the tests use, then every test.
# Release mode: the same build the main job uses, so libtorch bindings and
# Arrow/Parquet are compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The API fuzzer the service's OpenAPI contract is checked with (tests only).
if ! .venv/bin/python scripts/venv_has.py "schemathesis==4.32.5"; then
  echo "test: installing schemathesis==4.32.5 into .venv"
  .venv/bin/python -m pip install --quiet "schemathesis==4.32.5"
fi
scripts/postgres.sh
cargo test --release --locked --features lightgbm "$@"

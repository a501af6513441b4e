#!/usr/bin/env bash
# The test command of the README: set-up (if needed), the PostgreSQL the
# prediction-log tests use, then every test.
# Release mode: the same build the main job uses, so libtorch bindings and
# Arrow/Parquet are compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/postgres.sh
cargo test --release --locked --features lightgbm "$@"

#!/usr/bin/env bash
# The test command of the README: set-up (if needed), then every test.
# Release mode: the same build the main job uses, so libtorch bindings and
# Arrow/Parquet are compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --locked "$@"

#!/usr/bin/env bash
# An ablation sweep from the shell: one experiment, one setting varied, every
# run trained with `--set` and compared in one table at the end.
#
#   scripts/ablate.sh [EXPERIMENT] [KEY] [VALUES...]
#   scripts/ablate.sh experiments/deepfm.toml model.embedding_dim 4 8 16 32
#   scripts/ablate.sh experiments/dcn.toml model.cross_layers 0 1 2 3 4
#
# Defaults: the DeepFM embedding-dimension sweep. EXTRA="--set train.epochs=1"
# adds settings to every run. Runs go to runs/ablate-<key>-<value>-<time>.
set -euo pipefail
cd "$(dirname "$0")/.."
exp=${1:-experiments/deepfm.toml}
key=${2:-model.embedding_dim}
shift $(( $# > 2 ? 2 : $# )) || true
values=("$@")
[ ${#values[@]} -gt 0 ] || values=(4 8 16 32)
bin=${CTR_DL:-target/release/ctr-dl}
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
stamp=$(date -u +%Y%m%d-%H%M%S)
runs=()
for v in "${values[@]}"; do
  run="ablate-${key##*.}-$v-$stamp"
  echo "== $key = $v"
  # shellcheck disable=SC2086
  $bin train --config "$exp" --set "$key=$v" ${EXTRA:-} --run "$run" --quiet
  runs+=("runs/$run")
done
echo
echo "== $key sweep on $exp"
$bin compare "${runs[@]}" --sort run

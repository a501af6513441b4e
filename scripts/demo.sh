#!/usr/bin/env bash
# The main job of the README, end to end on defaults that need nothing else:
# simulate ad impressions with a known click probability, convert a real
# Criteo sample, print the data summaries, then train DeepFM on the simulated
# impressions (experiments/deepfm.toml), evaluate it and compare it with the
# truth. Datasets go to out/demo, runs to runs/ and checkpoints/ (all
# git-ignored). ROWS=... changes the simulated size (default 1,000,000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# --all-targets: the same feature set as `cargo test`, so the two share one build.
cargo build --release --locked --all-targets
bin=target/release/ctr-dl
out=out/demo
rows=${ROWS:-1000000}
mkdir -p "$out"

echo "== libtorch"
$bin env

echo "== simulate $rows impressions"
$bin simulate --rows "$rows" --out "$out/synthetic" --overwrite

echo "== convert a Criteo log (Kaggle train.txt layout)"
criteo=../shared/data/criteo/train_1k.txt
if [ ! -f "$criteo" ]; then
  # No real sample beside the checkout: a Criteo-shaped file from the simulator.
  $bin simulate --rows 20000 --format criteo-tsv --out "$out/criteo-tsv" --overwrite --quiet >/dev/null
  criteo=$out/criteo-tsv/train.txt
fi
$bin convert --format criteo --input "$criteo" --out "$out/criteo" --overwrite

echo "== statistics of the simulated data"
$bin stats "$out/synthetic" --top 3
echo "== train DeepFM on the simulated impressions (experiments/deepfm.toml)"
run=demo-deepfm-$(date -u +%Y%m%d-%H%M%S)
$bin train --config experiments/deepfm.toml --set "data.path=\"$out/synthetic\"" --run "$run"

echo "== evaluate its best weights on test"
$bin eval --run "runs/$run" --split test

echo "== runs so far"
$bin compare runs
echo "demo finished: datasets in $out/, the run in runs/$run (tensorboard --logdir runs)"

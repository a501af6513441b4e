#!/usr/bin/env bash
# The main job of the README, end to end on defaults that need nothing else:
# simulate ad impressions with a known click probability, convert a real
# Criteo sample, print the data summaries, then train DeepFM on the simulated
# impressions (experiments/deepfm.toml), evaluate it and compare it with the
# truth and with the LightGBM baseline, render the report of both, then
# export, serve and query DeepFM. Datasets go to out/demo, runs to runs/ and checkpoints/ (all
# git-ignored). ROWS=... changes the simulated size (default 1,000,000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The binary only: `cargo test` (scripts/test.sh) builds the test binary on top
# of the same build, with the same features, compiling nothing twice.
cargo build --release --locked --features lightgbm
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
echo "== the exploratory report of the simulated data (open $out/eda/eda.html)"
$bin eda "$out/synthetic" --out "$out/eda" --quiet
echo "== train DeepFM on the simulated impressions (experiments/deepfm.toml)"
run=demo-deepfm-$(date -u +%Y%m%d-%H%M%S)
$bin train --config experiments/deepfm.toml --set "data.path=\"$out/synthetic\"" --run "$run"

echo "== evaluate its best weights on test"
$bin eval --run "runs/$run" --split test

echo "== the LightGBM baseline on the same split (experiments/lightgbm.toml)"
lgbm=demo-lightgbm-$(date -u +%Y%m%d-%H%M%S)
$bin baseline --config experiments/lightgbm.toml --set "data.path=\"$out/synthetic\"" --run "$lgbm"

echo "== runs so far"
$bin compare "runs/$run" "runs/$lgbm"

echo "== the report of both (open $out/report/report.html)"
$bin report --run "runs/$run" --run "runs/$lgbm" --out "$out/report"

echo "== export it as a TorchScript bundle"
$bin export --run "runs/$run"

echo "== serve it and ask for one prediction"
port=${PORT:-8765}
$bin serve --models models --port "$port" --workers 1 --quiet > "$out/serve.log" 2>&1 &
server=$!
python3 - "$port" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(600):
    try:
        health = json.load(urllib.request.urlopen(base + "/health", timeout=1))
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("serve did not answer /health within 60 s")
print("GET /health ->", json.dumps(health))
row = {"user_id": "u17", "user_age": "25-34", "user_gender": "female", "ad_id": "a3",
       "ad_category": "cat4", "device": "mobile", "os": "android", "placement": "in_feed",
       "site_id": "s11", "site_category": "scat2", "time": "2026-01-09T20:15:00Z"}
req = urllib.request.Request(base + "/predict_ctr", data=json.dumps(row).encode(),
                             headers={"Content-Type": "application/json"})
print("POST /predict_ctr", json.dumps(row))
print("  ->", json.dumps(json.load(urllib.request.urlopen(req, timeout=5))))
PY
kill -TERM "$server"
wait "$server"
echo "server stopped cleanly"
echo "demo finished: datasets in $out/, the runs in runs/$run and runs/$lgbm (tensorboard --logdir runs), the reports in $out/eda/eda.html and $out/report/report.html, the bundle in models/deepfm/"

#!/usr/bin/env bash
# Model quality, side by side in one run on the same split and encoding:
# ctr-dl's DeepFM against DeepCTR-Torch's and FuxiCTR's DeepFM with the same
# settings (embedding 16, MLP 400-400-400, no dropout, no L2, Adam 1e-3, batch
# 4096, at most EPOCHS epochs, best epoch by valid AUC, 2 threads).
#
#   bench/quality_vs_refs.sh                      # a Criteo-shaped file from the simulator
#   DATA=data/criteo_x4 bench/quality_vs_refs.sh  # a converted real download
#
# DATA is a dataset converted by `ctr-dl convert` (for Criteo:
# `--format criteo --split random --seed 2018 --ratios 0.8 0.1 0.1`, the x4
# split). Without it, ROWS (default 1,000,000) Criteo-shaped lines are simulated
# and converted with that split. Features follow experiments/criteo/deepfm.toml
# (integers bucketed by floor(ln(x)^2), min count 10); the references read
# ctr-dl's encoded chunks through bench/encoded.py, so all three see the same
# ids. Prints one JSON line per implementation and a table.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
epochs=${EPOCHS:-3}
dir=${BENCH_DIR:-/tmp/ctr-dl-bench}/quality
bin=target/release/ctr-dl
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
bash bench/install_refs.sh >/dev/null
mkdir -p "$dir"
data=${DATA:-}
if [ -z "$data" ]; then
  data="$dir/criteo-$rows"
  if [ ! -f "$data/_dataset.json" ]; then
    $bin simulate --rows "$rows" --format criteo-tsv --out "$dir/tsv-$rows" --overwrite --quiet >/dev/null
    $bin convert --format criteo --input "$dir/tsv-$rows/train.txt" --out "$data" \
      --split random --seed 2018 --ratios 0.8 0.1 0.1 --overwrite --quiet >/dev/null
  fi
fi
sets=(--set "data.path=\"$data\"" --set "output.runs=\"$dir/runs\"" --set "output.checkpoints=\"$dir/checkpoints\""
      --set model.dropout=0.0 --set train.embedding_l2=0.0 --set train.batch_size=4096
      --set "train.epochs=$epochs" --set 'train.monitor="auc"' --set train.threads=2 --set 'train.device="cpu"')
pre=$($bin preprocess --config experiments/criteo/deepfm.toml "${sets[@]}" --quiet | head -1)
enc=$(echo "$pre" | awk '{print $2}')
echo "data: $pre" >&2
run=quality-$(date -u +%Y%m%d-%H%M%S)
t0=$(date +%s.%N)
$bin train --config experiments/criteo/deepfm.toml "${sets[@]}" --run "$run" --quiet >/dev/null
t1=$(date +%s.%N)
out="$dir/$run.jsonl"
python3 - "$dir/runs/$run/metrics.json" "$t0" "$t1" <<'PY' | tee "$out"
import json, sys
m = json.load(open(sys.argv[1]))
print(json.dumps({"impl": "ctr-dl", "epochs_run": m["train"]["epochs"], "fit_seconds": round(float(sys.argv[3]) - float(sys.argv[2]), 2),
                  "valid_auc": round(m["valid"]["auc"], 6), "valid_logloss": round(m["valid"]["logloss"], 6),
                  "test_auc": round(m["test"]["auc"], 6), "test_logloss": round(m["test"]["logloss"], 6)}))
PY
py=.venv/bin/python
$py bench/deepctr_torch_speed.py --data "$enc" --mode quality --epochs "$epochs" --batch 4096 --threads 2 | tee -a "$out"
$py bench/fuxictr_quality.py --data "$enc" --epochs "$epochs" --batch 4096 --threads 2 | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"\n| impl | epochs | fit s | valid AUC | test AUC | test logloss | test AUC - ctr-dl |")
print("|---|---|---|---|---|---|---|")
base = rows[0]["test_auc"]
for r in rows:
    print(f"| {r['impl']} | {r.get('epochs_run', '')} | {r.get('fit_seconds', '')} | {r['valid_auc']:.5f} | "
          f"{r['test_auc']:.5f} | {r['test_logloss']:.5f} | {r['test_auc'] - base:+.5f} |")
PY

#!/usr/bin/env bash
# LightGBM parity: ctr-dl's LightGBM baseline and Python's lightgbm (the same
# LightGBM 4.7) with the same parameters on the same split and matrix, side
# by side in one run, both on THREADS threads (default 2). Prints fit seconds
# (binning + boosting), rounds and test AUC / logloss.
#
#   bench/lightgbm_parity.sh                     # 1M simulated rows
#   ROWS=200000 bench/lightgbm_parity.sh
#   DATA=data/criteo_x4 CONFIG=experiments/criteo/lightgbm.toml bench/lightgbm_parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
threads=${THREADS:-2}
config=${CONFIG:-experiments/lightgbm.toml}
data=${DATA:-${BENCH_DIR:-/tmp/ctr-dl-bench}/sim-$rows}
bin=target/release/ctr-dl
[ -x "$bin" ] || cargo build --release --locked --features lightgbm --all-targets
if [ ! -f "$data/dataset.json" ]; then
  $bin simulate --rows "$rows" --out "$data" --overwrite --quiet >/dev/null
fi
run="lgbm-parity-$(date -u +%Y%m%d-%H%M%S)"
$bin baseline --config "$config" --set "data.path=\"$data\"" --set "lightgbm.threads=$threads" \
  --run "$run" --quiet >/dev/null
ours=$(python3 - "runs/$run" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
print(json.dumps({"implementation": "ctr-dl baseline", "fit_seconds": m["train"]["seconds"],
                  "rounds": m["train"]["steps"], "best_round": m["best_step"],
                  "test_auc": m["test"]["auc"], "test_logloss": m["test"]["logloss"]}))
PY
)
theirs=$(OMP_NUM_THREADS=$threads .venv/bin/python bench/lightgbm_parity.py "runs/$run")
python3 - "$ours" "$theirs" "$data" "$threads" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"\n{sys.argv[3]}, {sys.argv[4]} threads")
print("| implementation | fit s | rounds | best round | test AUC | test logloss |")
print("|---|---|---|---|---|---|")
for r in (a, b):
    print(f"| {r['implementation']} | {r['fit_seconds']:.1f} | {r['rounds']} | {r['best_round']} | "
          f"{r['test_auc']:.5f} | {r['test_logloss']:.5f} |")
print(f"\nAUC difference {a['test_auc'] - b['test_auc']:+.5f}; "
      f"time ratio ctr-dl / Python {a['fit_seconds'] / b['fit_seconds']:.2f}")
PY

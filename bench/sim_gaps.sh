#!/usr/bin/env bash
# Distance from the best possible log loss, per model and data size: simulate
# ROWS impressions with the simulator's defaults (or SIM_CONFIG's world),
# train each experiment on them, and print every run's test log loss, the
# truth's, and the gap (test log loss minus the log loss of the true click
# probability), with peak RSS.
#
#   bench/sim_gaps.sh                         # ROWS=1000000, MODELS="lr deepfm dcn"
#   ROWS=10000000 EVAL_EVERY=500 EXTRA="--set train.epochs=2" bench/sim_gaps.sh
#
# EXTRA adds settings to every run.
# The data goes to $BENCH_DIR/sim-<rows>-<world> (default /tmp/ctr-dl-bench;
# bench/sim_data.sh) and is reused; runs go to runs/gap-<rows>-<model>-<time>.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
models=${MODELS:-lr deepfm dcn}
bin=target/release/ctr-dl
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
. bench/sim_data.sh
data=$(sim_data "$rows" "$bin")
stamp=$(date -u +%Y%m%d-%H%M%S)
runs=()
for m in $models; do
  run="gap-$rows-$m-$stamp"
  sets=(--set "data.path=\"$data\"")
  [ -n "${EVAL_EVERY:-}" ] && sets+=(--set "train.eval_every=$EVAL_EVERY")
  # shellcheck disable=SC2086
  /usr/bin/time -o "/tmp/$run.time" -f "%e %M" \
    $bin train --config "experiments/$m.toml" "${sets[@]}" ${EXTRA:-} --run "$run" --quiet >/dev/null
  runs+=("runs/$run")
done
python3 - "$rows" "${runs[@]}" <<'PY'
import json, sys
rows = int(sys.argv[1])
print(f"\n{rows:,} simulated rows (train 80%)")
print("| model | steps | train s | peak RSS MiB | valid AUC | test AUC | test logloss | truth logloss | gap |")
print("|---|---|---|---|---|---|---|---|---|")
for run in sys.argv[2:]:
    m = json.load(open(f"{run}/metrics.json"))
    secs, rss = open(f"/tmp/{run.split('/')[-1]}.time").read().split()
    t = m["truth"]
    print(f"| {m['model']} | {m['train']['steps']} | {float(secs):.0f} | {int(rss) / 1024:.0f} | "
          f"{m['valid']['auc']:.4f} | {m['test']['auc']:.4f} | {m['test']['logloss']:.5f} | "
          f"{t['test_logloss']:.5f} | {t['gap']:.5f} |")
PY

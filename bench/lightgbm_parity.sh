#!/usr/bin/env bash
# LightGBM parity: ctr-dl's LightGBM baseline and Python's lightgbm (the same
# LightGBM 4.7) with the same parameters on the same split and matrix, side
# by side in one run, both on THREADS threads (default 2), REPEATS times each
# (default 3, interleaved, since a 2-core machine's timings wander). Prints
# the median fit seconds (binning + boosting; every repeat's in brackets),
# rounds and test AUC / logloss.
#
#   bench/lightgbm_parity.sh                     # 1M simulated rows
#   ROWS=200000 REPEATS=1 bench/lightgbm_parity.sh
#   DATA=data/criteo_x4 CONFIG=experiments/criteo/lightgbm.toml bench/lightgbm_parity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
threads=${THREADS:-2}
repeats=${REPEATS:-3}
config=${CONFIG:-experiments/lightgbm.toml}
bin=target/release/ctr-dl
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
if [ -n "${DATA:-}" ]; then
  data=$DATA
else
  . bench/sim_data.sh
  data=$(sim_data "$rows" "$bin")
fi
stamp=$(date -u +%Y%m%d-%H%M%S)
ours=()
theirs=()
for i in $(seq "$repeats"); do
  run="lgbm-parity-$stamp-$i"
  $bin baseline --config "$config" --set "data.path=\"$data\"" --set "lightgbm.threads=$threads" \
    --run "$run" --quiet >/dev/null
  ours+=("runs/$run")
  theirs+=("$(OMP_NUM_THREADS=$threads .venv/bin/python bench/lightgbm_parity.py "runs/$run")")
done
python3 - "$data" "$threads" "${#ours[@]}" "${ours[@]}" "${theirs[@]}" <<'PY'
import json, statistics, sys
data, threads, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ours = []
for run in sys.argv[4:4 + n]:
    m = json.load(open(f"{run}/metrics.json"))
    ours.append({"implementation": "ctr-dl baseline", "fit_seconds": m["train"]["seconds"],
                 "rounds": m["train"]["steps"], "best_round": m["best_step"],
                 "test_auc": m["test"]["auc"], "test_logloss": m["test"]["logloss"]})
theirs = [json.loads(t) for t in sys.argv[4 + n:]]
print(f"\n{data}, {threads} threads, {n} repeat(s)")
print("| implementation | median fit s (each) | rounds trained | best round | test AUC | test logloss |")
print("|---|---|---|---|---|---|")
med = {}
for rs in (ours, theirs):
    r = rs[0]
    secs = [x["fit_seconds"] for x in rs]
    med[r["implementation"]] = statistics.median(secs)
    each = ", ".join(f"{s:.1f}" for s in secs)
    print(f"| {r['implementation']} | {statistics.median(secs):.1f} ({each}) | {r['rounds']} | "
          f"{r['best_round']} | {r['test_auc']:.5f} | {r['test_logloss']:.5f} |")
a, b = ours[0], theirs[0]
print(f"\nAUC difference {a['test_auc'] - b['test_auc']:+.5f}; median time ratio ctr-dl / Python "
      f"{med[a['implementation']] / med[b['implementation']]:.2f}")
PY

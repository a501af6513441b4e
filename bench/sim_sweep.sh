#!/usr/bin/env bash
# A hyperparameter sweep on simulated data, several runs at a time. Each line
# of a sweep file names a variant: a label, an experiment and its `--set`
# overrides. Every variant trains on the same ROWS simulated impressions (the
# simulator's defaults unless SIM_CONFIG, as bench/sim_gaps.sh), and the runs
# are compared at the end by their gap to the true probability's test log
# loss. Sweep files measured before 2026-11-30 ran in the world now in
# bench/sweeps/calm.toml: rerun them with SIM_CONFIG=bench/sweeps/calm.toml.
#
#   bench/sim_sweep.sh bench/sweeps/deep_1m.txt
#   PARALLEL=4 THREADS=4 DEVICE=cuda bench/sim_sweep.sh bench/sweeps/deep_1m.txt
#
# Sweep file: `label experiments/x.toml [--set key=value ...]` per line (values
# without spaces), `#` starts a comment; a variant runs on its experiment as
# it is now, so a file whose results came from earlier shipped settings pins
# them with `--set`; a LightGBM experiment
# (experiments/lightgbm.toml) is a variant like any other. ROWS (default
# 1000000), PARALLEL runs at a time (default 1), DEVICE and THREADS for every
# run (default: the experiment's; THREADS is LightGBM's threads too),
# SIM_CONFIG a simulator config instead of the defaults, CTR_DL the binary.
# Data go under $BENCH_DIR/sim-<rows>-<world> (bench/sim_data.sh), runs under
# $BENCH_DIR/sweep-<rows> (default /tmp/ctr-dl-bench);
# the encoded caches are built one at a time before any run starts, so
# parallel runs never race on one.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:?usage: bench/sim_sweep.sh SWEEP_FILE}
rows=${ROWS:-1000000}
parallel=${PARALLEL:-1}
bin=${CTR_DL:-target/release/ctr-dl}
base=${BENCH_DIR:-/tmp/ctr-dl-bench}
out=$base/sweep-$rows/$(basename "$file" .txt)-$(date -u +%Y%m%d-%H%M%S)
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
. bench/sim_data.sh
data=$(sim_data "$rows" "$bin")
mkdir -p "$out/logs"
common=(--set "data.path=\"$data\"" --set "output.runs=\"$out/runs\"" --set "output.checkpoints=\"$out/checkpoints\"")
# Settings of the trainer, or of LightGBM, for a variant's experiment file.
settings() {
  if grep -q '^\[lightgbm\]' "$1"; then
    [ -n "${THREADS:-}" ] && echo "--set lightgbm.threads=$THREADS"
  else
    [ -n "${DEVICE:-}" ] && echo "--set train.device=\"$DEVICE\""
    [ -n "${THREADS:-}" ] && echo "--set train.threads=$THREADS"
  fi
  true
}

labels=() lines=()
while read -r line; do
  line=${line%%#*}
  [ -n "${line// }" ] || continue
  read -ra words <<<"$line"
  labels+=("${words[0]}")
  lines+=("${words[*]:1}")
done <"$file"
[ ${#labels[@]} -gt 0 ] || { echo "sim_sweep: $file names no variant" >&2; exit 1; }

for i in "${!labels[@]}"; do
  read -ra args <<<"${lines[$i]}"
  $bin preprocess --config "${args[0]}" "${args[@]:1}" "${common[@]}" --quiet >/dev/null
done
for i in "${!labels[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  read -ra args <<<"${lines[$i]}"
  echo "== ${labels[$i]}: ${lines[$i]}"
  # shellcheck disable=SC2046
  $bin train --config "${args[0]}" "${args[@]:1}" "${common[@]}" $(settings "${args[0]}") \
    --run "${labels[$i]}" --quiet \
    >"$out/logs/${labels[$i]}.log" 2>&1 &
done
wait || true
failed=()
for l in "${labels[@]}"; do
  grep -q '"test"' "$out/runs/$l/metrics.json" 2>/dev/null || failed+=("$l")
done
echo
echo "== $file on $rows simulated rows ($out)"
$bin compare "$out/runs" --sort test_logloss || true
[ ${#failed[@]} = 0 ] || { echo "sim_sweep: failed: ${failed[*]} (logs in $out/logs)" >&2; exit 1; }

#!/usr/bin/env bash
# Peak memory of `ctr-dl convert` as the input grows: generate Criteo-format
# files of each size and convert them, printing wall time and peak RSS.
# Streaming means the peak stays flat.   bench/convert_memory.sh [ROWS...]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-/tmp/ctr-dl-bench}
mkdir -p "$work"
cargo build --release --locked --features lightgbm --quiet
bin=target/release/ctr-dl
for rows in "${@:-1000000 10000000}"; do
  input=$work/criteo_${rows}/train.txt
  [ -f "$input" ] || $bin simulate --rows "$rows" --format criteo-tsv --out "$work/criteo_${rows}" --quiet >/dev/null
  rm -rf "$work/mem_out"
  /usr/bin/time -f "%e %M" -o "$work/time.txt" $bin convert --format criteo --input "$input" --out "$work/mem_out" --quiet >/dev/null
  read -r secs kb <"$work/time.txt"
  printf "%10d lines  %6s  %7.1f s  %6.0f MiB peak RSS\n" "$rows" "$(du -hL "$input" | cut -f1)" "$secs" "$(echo "$kb / 1024" | bc -l)"
  rm -rf "$work/mem_out"
done

#!/usr/bin/env bash
# Convert one Criteo-format file with ctr-dl and with pyarrow, side by side in
# one run: wall time and peak RSS of each (GNU time). ctr-dl also splits the
# rows three ways and computes the per-column summary; pyarrow writes one file.
#   bench/convert_vs_pyarrow.sh [ROWS]      (default 2,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-2000000}
work=${BENCH_DIR:-/tmp/ctr-dl-bench}
mkdir -p "$work"
scripts/setup.sh >/dev/null
cargo build --release --locked --features lightgbm --quiet
bin=target/release/ctr-dl
input=$work/criteo_${rows}/train.txt
if [ ! -f "$input" ]; then
  $bin simulate --rows "$rows" --format criteo-tsv --out "$work/criteo_${rows}" --quiet >/dev/null
fi
echo "input: $input ($(du -hL "$input" | cut -f1), $rows lines), $(nproc) cores"
sync
measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >"$work/$name.log" 2>&1
  read -r secs kb <"$work/time.txt"
  printf "%-8s %8.2f s %10.0f rows/s %8.0f MiB peak RSS\n" "$name" "$secs" "$(echo "$rows / $secs" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
}
cat "$input" >/dev/null # warm the page cache for both
rm -rf "$work/out_ctr" "$work/out_pyarrow.parquet"
measure ctr-dl $bin convert --format criteo --input "$input" --out "$work/out_ctr" --quiet
measure pyarrow .venv/bin/python bench/pyarrow_convert.py "$input" "$work/out_pyarrow.parquet"
echo "output: ctr-dl $(du -sh "$work/out_ctr" | cut -f1) in $(find "$work/out_ctr" -name '*.parquet' | wc -l) shards, pyarrow $(du -h "$work/out_pyarrow.parquet" | cut -f1)"

#!/usr/bin/env bash
# Training speed, side by side in one run on the same encoded data: ctr-dl's
# DeepFM (lazy row-wise Adam on the embedding table), DeepCTR-Torch's DeepFM,
# and bare PyTorch loops with SparseAdam (sparse embedding gradients) and with
# dense Adam. 39 fields hashed into 100,000 buckets each, embedding 16, MLP
# 400-400-400, batch 4096, Adam 1e-3, 2 threads, STEPS steps (default 200).
#
#   bench/train_speed.sh            # ROWS=1000000 STEPS=200
#   DEVICE=cuda THREADS=16 bench/train_speed.sh   # the same comparison on a GPU
# CTR_DL (default target/release/ctr-dl) and PYTHON (default .venv/bin/python,
# whose references bench/install_refs.sh installs) name the programs, so the
# script also runs on a machine with its own PyTorch: INSTALL_REFS=0 skips the
# install, and a reference that cannot be imported there is reported, not fatal.
# The data: a Criteo-shaped file from the simulator, converted and encoded by
# ctr-dl (bench/deepfm_speed.toml); the Python references read ctr-dl's encoded
# chunks (format in src/features/cache.rs) through bench/encoded.py.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000}
steps=${STEPS:-200}
device=${DEVICE:-cpu}
threads=${THREADS:-2}
dir=${BENCH_DIR:-/tmp/ctr-dl-bench}/train-speed
bin=${CTR_DL:-target/release/ctr-dl}
py=${PYTHON:-.venv/bin/python}
[ -x "$bin" ] || cargo build --release --locked --features lightgbm
[ "${INSTALL_REFS:-1}" = 0 ] || bash bench/install_refs.sh >/dev/null
mkdir -p "$dir"
if [ ! -f "$dir/criteo/_dataset.json" ]; then
  $bin simulate --rows "$rows" --format criteo-tsv --out "$dir/tsv" --overwrite --quiet >/dev/null
  $bin convert --format criteo --input "$dir/tsv/train.txt" --out "$dir/criteo" --overwrite --quiet >/dev/null
fi
sets=(--set "data.path=\"$dir/criteo\"" --set "output.runs=\"$dir/runs\"" --set "output.checkpoints=\"$dir/checkpoints\""
      --set "train.max_steps=$steps" --set "train.device=\"$device\"" --set "train.threads=$threads")
pre=$($bin preprocess --config bench/deepfm_speed.toml "${sets[@]}" --quiet | head -1)
enc=$(echo "$pre" | awk '{print $2}')
echo "data: $pre"
run=speed-$(date -u +%Y%m%d-%H%M%S)
$bin train --config bench/deepfm_speed.toml "${sets[@]}" --run "$run" --quiet >/dev/null
python3 - "$dir/runs/$run/metrics.json" "$device" "$threads" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["train"]
print(json.dumps({"impl": "ctr-dl", "samples_per_sec": round(m["samples_per_sec"], 1),
                  "steps": m["steps"], "seconds": round(m["seconds"], 2),
                  "data_wait_fraction": round(m["data_wait_fraction"], 4),
                  "device": sys.argv[2], "threads": int(sys.argv[3])}))
PY
ref=(--data "$enc" --steps "$steps" --batch 4096 --threads "$threads" --device "$device")
$py bench/deepctr_torch_speed.py "${ref[@]}" || echo '{"impl": "deepctr-torch", "error": "failed (see above)"}'
$py bench/bare_torch_loop.py "${ref[@]}" --optimizer sparse
$py bench/bare_torch_loop.py "${ref[@]}" --optimizer dense

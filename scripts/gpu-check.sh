#!/usr/bin/env bash
# The CUDA path, checked where a GPU is present (never by the tests): the same
# short DeepFM run on CPU and on CUDA, their metrics compared and their speeds
# printed. Exit 0 when CUDA trains and its test AUC and logloss are within
# TOL (default 0.005) of the CPU run's and serving the exported bundle on CUDA
# gives the CPU service's probabilities to 1e-5; 2 when no CUDA device is
# visible.
#
#   scripts/gpu-check.sh            # 200k simulated rows, 1 epoch
#   ROWS=1000000 STEPS=300 scripts/gpu-check.sh
# CTR_DL names the binary (default target/release/ctr-dl) and PYTHON a Python
# with pyarrow (default .venv/bin/python), for a GPU machine that has its own.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-200000}
steps=${STEPS:-0}
tol=${TOL:-0.005}
out=out/gpu-check
bin=${CTR_DL:-target/release/ctr-dl}
py=${PYTHON:-.venv/bin/python}
[ -x "$bin" ] || { scripts/setup.sh && cargo build --release --locked --features lightgbm; }
if ! $bin env | grep -q '"cuda_available": true'; then
  echo "gpu-check: no CUDA device visible to libtorch" >&2
  $bin env >&2
  exit 2
fi
[ -f "$out/data/_dataset.json" ] || $bin simulate --rows "$rows" --out "$out/data" --overwrite --quiet >/dev/null
stamp=$(date -u +%Y%m%d-%H%M%S)
common=(--config experiments/deepfm.toml --set "data.path=\"$out/data\"" --set train.epochs=1
        --set "train.max_steps=$steps" --set "output.runs=\"$out/runs\"" --set "output.checkpoints=\"$out/checkpoints\"" --quiet)
for dev in cpu cuda; do
  echo "== $dev"
  $bin train "${common[@]}" --set "train.device=\"$dev\"" --run "$dev-$stamp"
done
if [ "${AMP:-1}" = 1 ]; then
  echo "== cuda with mixed precision"
  $bin train "${common[@]}" --set 'train.device="cuda"' --set train.amp=true --run "cuda-amp-$stamp"
fi
$bin compare "$out/runs/cpu-$stamp" "$out/runs/cuda-$stamp" $( [ "${AMP:-1}" = 1 ] && echo "$out/runs/cuda-amp-$stamp") --sort run
echo "== export the CPU run, serve it on CPU and on CUDA, compare 100 test rows"
$bin export --run "$out/runs/cpu-$stamp" --out "$out/models/deepfm/1" --overwrite
# The bundle's history counters, fresh for each server (the bundle is new).
rm -rf "$out/history"
$bin serve --models "$out/models" --port 8201 --device cpu --predlog off \
  --history-dir "$out/history/cpu" >"$out/serve-cpu.log" 2>&1 &
s_cpu=$!
$bin serve --models "$out/models" --port 8202 --device cuda --predlog off \
  --history-dir "$out/history/cuda" >"$out/serve-cuda.log" 2>&1 &
s_gpu=$!
trap 'kill $s_cpu $s_gpu 2>/dev/null || true' EXIT
"$py" - "$out/data" <<'PY'
import json, sys, time, urllib.request
import pyarrow.dataset as ds
rows = ds.dataset(sys.argv[1] + "/test", format="parquet").head(100).to_pylist()
rows = [{k: (v.isoformat().replace("+00:00", "Z") if hasattr(v, "isoformat") else v)
         for k, v in r.items() if v is not None and k not in ("clicked", "p_click")} for r in rows]
def ask(port):
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/batch_predict", data=json.dumps({"instances": rows}).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))["predictions"]
cpu, gpu = ask(8201), ask(8202)
d = max(abs(a - b) for a, b in zip(cpu, gpu))
print(f"serving: max |cpu - cuda| over {len(cpu)} rows = {d:.2e}")
sys.exit(0 if d <= 1e-5 else 1)
PY
python3 - "$out/runs/cpu-$stamp/metrics.json" "$out/runs/cuda-$stamp/metrics.json" "$tol" <<'PY'
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
tol = float(sys.argv[3])
d_auc = abs(cpu["test"]["auc"] - gpu["test"]["auc"])
d_ll = abs(cpu["test"]["logloss"] - gpu["test"]["logloss"])
print(f"samples/s: cpu {cpu['train']['samples_per_sec']:.0f}  cuda {gpu['train']['samples_per_sec']:.0f}")
print(f"test AUC cpu {cpu['test']['auc']:.5f} cuda {gpu['test']['auc']:.5f} (diff {d_auc:.5f}); logloss diff {d_ll:.5f}")
sys.exit(0 if d_auc <= tol and d_ll <= tol else 1)
PY

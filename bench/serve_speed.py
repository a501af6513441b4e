"""Serving latency and throughput on loopback: ctr-dl serve against the
FastAPI + uvicorn reference (bench/fastapi_server.py) serving the same
model.pt with the same encoding, side by side in one run, load from oha in its
own process.

For each server: p50/p99 of single requests at fixed rates, the highest rate
held with p99 under 10 ms (rates climbed until p99 >= 10 ms, the achieved rate
falls under 95% of the target, or a request fails), and the same for 100-row
/batch_predict bodies. Requests are raw rows of the bundle's test split
(cycled), so the encoder sees realistic values.

  bash bench/install_refs.sh    # fastapi, uvicorn and oha
  .venv/bin/python bench/serve_speed.py --bundle models/deepfm-plain/1 --data out/demo/synthetic

after scripts/demo.sh (which writes the data) and a DeepFM without the
history inputs, which the reference does not compute:

  target/release/ctr-dl train --config experiments/deepfm.toml \
    --set 'data.path="out/demo/synthetic"' --set 'features.history.keys=[]' --run deepfm-plain
  target/release/ctr-dl export --run runs/deepfm-plain --out models/deepfm-plain/1
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pyarrow.dataset as ds

SINGLE_RATES = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 20000, 25000]
BATCH_RATES = [10, 25, 50, 100, 200, 400, 800, 1200, 1600, 2400]


def wait_ready(port, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"server on {port} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"server on {port} not ready in {timeout}s")


def oha(url, body_file, rate, seconds, conns):
    out = subprocess.run(
        ["oha", "--no-tui", "--latency-correction", "--output-format", "json", "-z", f"{seconds}s", "-q", str(rate), "-c", str(conns),
         "-m", "POST", "-H", "content-type: application/json", "-D", body_file, url],
        capture_output=True, text=True, check=True).stdout
    j = json.loads(out)
    codes = j.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    # Requests still in flight when -z ends are reported as "aborted due to
    # deadline": an artefact of the stop, not a failure.
    errors = {k: v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k}
    bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(errors.values())
    lat = j["latencyPercentiles"]
    return {"target": rate, "rps": round(j["summary"]["requestsPerSec"], 1),
            "p50_ms": round(lat["p50"] * 1e3, 3), "p99_ms": round(lat["p99"] * 1e3, 3), "ok": ok, "failed": bad,
            "errors": errors}


def climb(url, body, rates, seconds, conns):
    rows, best = [], None
    for r in rates:
        m = oha(url, body, r, seconds, conns)
        rows.append(m)
        print(json.dumps(m), file=sys.stderr)
        if m["failed"] or m["p99_ms"] >= 10 or m["rps"] < 0.95 * r:
            break
        best = m
    return rows, best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", required=True, help="the dataset the bundle was trained on (raw test rows)")
    ap.add_argument("--bin", default="target/release/ctr-dl")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=16)
    a = ap.parse_args()
    models = tempfile.mkdtemp()
    name, version = a.bundle.rstrip("/").split("/")[-2:]
    os.makedirs(os.path.join(models, name))
    os.symlink(os.path.abspath(a.bundle), os.path.join(models, name, version))
    cols = [c for c, _ in json.load(open(os.path.join(a.bundle, "features.json")))["columns"]]
    t = ds.dataset(os.path.join(a.data, "split=test"), format="parquet").head(100, columns=cols).to_pylist()
    rows = [{k: (v.isoformat().replace("+00:00", "Z") if hasattr(v, "isoformat") else v)
             for k, v in r.items() if v is not None} for r in t]
    single = os.path.join(models, "single.json")
    json.dump(rows[0], open(single, "w"))
    batch = os.path.join(models, "batch.json")
    json.dump({"instances": rows[:100]}, open(batch, "w"))

    servers = {
        "ctr-dl": ([a.bin, "serve", "--models", models, "--port", "8101", "--predlog",
                    os.path.join(models, "predlog.sqlite")], 8101),
        "fastapi+uvicorn": ([sys.executable, "-m", "uvicorn", "--app-dir", "bench", "fastapi_server:app",
                             "--port", "8102", "--workers", "2", "--log-level", "warning"], 8102),
    }
    results = {}
    for impl, (cmd, port) in servers.items():
        proc = subprocess.Popen(cmd, env={**os.environ, "BUNDLE": a.bundle}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(port, proc)
            base = f"http://127.0.0.1:{port}"
            at500 = oha(base + "/predict_ctr", single, 500, a.seconds, a.conns)
            s_rows, s_best = climb(base + "/predict_ctr", single, SINGLE_RATES, a.seconds, a.conns)
            b_rows, b_best = climb(base + "/batch_predict", batch, BATCH_RATES, a.seconds, a.conns)
            results[impl] = {"single_at_500": at500, "single_best": s_best, "batch100_best": b_best,
                             "single_runs": s_rows, "batch_runs": b_rows}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(json.dumps(results))
    print("\n| server | single @500 rps p50 / p99 ms | highest single rate with p99 < 10 ms | "
          "highest 100-row batch rate with p99 < 10 ms (rows/s) |")
    print("|---|---|---|---|")
    for impl, r in results.items():
        s, b = r["single_best"], r["batch100_best"]
        print(f"| {impl} | {r['single_at_500']['p50_ms']} / {r['single_at_500']['p99_ms']} | "
              f"{s['rps'] if s else '-'} (p99 {s['p99_ms'] if s else '-'} ms) | "
              f"{b['rps'] if b else '-'} batches/s = {round(b['rps'] * 100) if b else '-'} rows/s |")


if __name__ == "__main__":
    main()

"""The fault probe of issue 18, measured: two `ctr-dl serve` binaries (the
code before the fixes and after) side by side on the same bundle, each
started fresh for each case.

- nul: 200 predictions with the prediction log on PostgreSQL, the 50th
  with a `\\u0000` in a field; then SIGTERM. Records in the table, set aside
  (dead-letter file), lost, and seconds from SIGTERM to exit.
- rss: the prediction log on a PostgreSQL that is down; 400 requests of
  1 MB each. RSS before and after (VmRSS), and records dropped.
- snapshot: a history model whose counters hold --keys key values (about
  56 bytes each on disk); a snapshot after every feedback batch (one every
  200 ms) while one client sends predictions back to back for --seconds.
  p50, p99 and the worst prediction latency.
- slowloris: 600 connections that send half a request, with the server's
  file limit at 512; whether /health answers, how fast, and how many of the
  half requests the server has closed 12 s after they were opened.
- feedback: /feedback with `Content-Type: text/plain`; without the bearer
  token when CTR_DL_FEEDBACK_TOKEN is set; with an event time of
  9999-12-31; the same `event_id` sent twice. The status codes (and the
  answer to the retry).
- secrets: a `?password=` in the prediction-log URL: is it in the start-up
  log or in /model_info, and does /model_info show absolute paths?
- fallback: version 2 of the model with a truncated model.pt beside a good
  version 1: which version answers /predict_ctr.

  .venv/bin/python bench/hardening.py --before /tmp/ctr-dl-before \\
      --after target/release/ctr-dl --bundle models/NAME/VERSION

The bundle must have history inputs (`[features.history]`, e.g. the
shipped `experiments/lr.toml` after `scripts/demo.sh`) and know `user_id`.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np

PG = os.environ.get("CTR_DL_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def request(port, path, body=None, timeout=30, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, binary, models, config, prefix=(), env=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        cfg = os.path.join(self.dir, "serve.toml")
        lines = [f'models = "{models}"', f"port = {self.port}", "workers = 1",
                 f'history_dir = "{self.dir}/history"'] + list(config)
        open(cfg, "w").write("\n".join(lines) + "\n")
        self.log = open(os.path.join(self.dir, "out.log"), "w")
        self.proc = subprocess.Popen(list(prefix) + [binary, "serve", "--config", cfg], cwd=self.dir,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, **(env or {})))
        t0 = time.time()
        while time.time() - t0 < 120:
            if self.proc.poll() is not None:
                sys.exit(f"{binary} exited: {open(self.log.name).read()}")
            try:
                if request(self.port, "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        sys.exit(f"{binary} not ready")

    def rss_mb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def metric(self, name):
        text = request(self.port, "/metrics")[1].decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self, limit=60):
        """SIGTERM; seconds until it exited (None: killed after `limit`)."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=limit)
            return round(time.time() - t0, 2)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


def psql(sql):
    return subprocess.run(["psql", PG, "-tAc", sql], capture_output=True, text=True).stdout.strip()


def case_nul(binary, models, tag):
    table = f"bench_nul_{tag}_{os.getpid()}"
    s = Server(binary, models, [f'predlog = "{PG}"', f'predlog_table = "{table}"'])
    ok = 0
    for i in range(200):
        uid = "a\u0000b" if i == 49 else f"u{i}"
        ok += request(s.port, "/predict_ctr", {"user_id": uid})[0] == 200
    time.sleep(1)
    secs = s.stop()
    rows = int(psql(f"SELECT count(*) FROM {table}") or 0)
    psql(f"DROP TABLE IF EXISTS {table}")
    dead = os.path.join(s.dir, "logs/predlog.rejected.jsonl")
    rejected = sum(1 for _ in open(dead)) if os.path.exists(dead) else 0
    return {"answered_200": ok, "rows_written": rows, "set_aside": rejected,
            "lost": ok - rows - rejected, "shutdown_s": secs if secs is not None else "> 60 (killed)"}


def case_rss(binary, models, extra):
    s = Server(binary, models, ['predlog = "postgres://postgres@127.0.0.1:1/test"',
                                "max_body_bytes = 2000000"] + extra)
    before = s.rss_mb()
    big = {"user_id": "x" * (1 << 20)}
    codes = {}
    for _ in range(400):
        c = request(s.port, "/predict_ctr", big)[0]
        codes[c] = codes.get(c, 0) + 1
    time.sleep(1)
    after = s.rss_mb()
    dropped = s.metric("ctr_predlog_dropped_total")
    s.stop(limit=20)
    return {"codes": codes, "rss_before_mb": round(before), "rss_after_mb": round(after),
            "dropped": dropped}


def big_state(path, spec_keys, keys):
    """A history.state of `keys` key values spread over the model's keys."""
    rng = np.random.default_rng(1)
    per = [keys // spec_keys + (1 if i < keys % spec_keys else 0) for i in range(spec_keys)]
    with open(path, "wb") as f:
        f.write(b"CTRHIST1" + struct.pack("<QQ", 0, spec_keys))
        for n in per:
            e = np.zeros(n, dtype=[("h", "<u8"), ("imps", "<f8"), ("clicks", "<f8"), ("recent", "<f8"),
                                   ("at", "<i8"), ("li", "<i8"), ("lc", "<i8")])
            # Distinct sorted hashes (np.unique sorts); a few spare draws cover collisions.
            e["h"] = np.unique(rng.integers(0, 2**63 - 1, size=n + n // 100 + 16, dtype=np.uint64))[:n]
            e["imps"] = 10.0
            e["clicks"] = 1.0
            e["recent"] = 5.0
            e["at"] = 1_700_000_000_000
            e["li"] = 1_700_000_000_000
            e["lc"] = np.iinfo(np.int64).min
            f.write(struct.pack("<Q", n))
            f.write(e.tobytes())


def case_snapshot(binary, models, seconds):
    s = Server(binary, models, ['predlog = "off"', "history_snapshot_every = 1"])
    stop = threading.Event()
    snaps = [0]

    def feed():
        while not stop.is_set():
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            request(s.port, "/feedback", {"events": [{"user_id": "u1", "time": now, "clicked": 1}]}, timeout=60)
            snaps[0] += 1
            time.sleep(0.2)

    t = threading.Thread(target=feed)
    t.start()
    lat = []
    t0 = time.time()
    while time.time() - t0 < seconds:
        a = time.perf_counter()
        request(s.port, "/predict_ctr", {"user_id": "u1"})
        lat.append((time.perf_counter() - a) * 1e3)
    stop.set()
    t.join()
    s.stop()
    lat = np.array(lat)
    return {"predictions": len(lat), "snapshots": snaps[0], "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "max_ms": round(float(lat.max()), 1)}


def case_slowloris(binary, models):
    s = Server(binary, models, ['predlog = "off"'], prefix=["prlimit", "--nofile=512"])
    socks = []
    opened = time.time()
    for _ in range(600):
        try:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=2)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            socks.append(c)
        except OSError:
            break
    time.sleep(1)
    t0 = time.time()
    answered = None
    while time.time() - t0 < 40:
        try:
            if request(s.port, "/health", timeout=2)[0] == 200:
                answered = round(time.time() - t0, 2)
                break
        except OSError:
            pass
    # Past the server's header read timeout (10 s): how many half requests
    # has it closed (read to the end, or reset)?
    time.sleep(max(0.0, 12 - (time.time() - opened)))
    closed = 0
    for c in socks:
        c.setblocking(False)
        try:
            while c.recv(65536):
                pass
            closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        c.close()
    s.stop(limit=20)
    return {"held": len(socks), "health_answered_after_s": answered if answered is not None else "no answer in 40 s",
            "closed_by_the_server_after_12_s": closed}


def case_feedback(binary, models):
    s = Server(binary, models, ['predlog = "off"'], env={"CTR_DL_FEEDBACK_TOKEN": "t0ken"})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {"user_id": "u1", "time": now, "clicked": 1}
    auth = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    plain = request(s.port, "/feedback", {"events": [event]},
                    headers={"Content-Type": "text/plain", "Authorization": "Bearer t0ken"})[0]
    no_token = request(s.port, "/feedback", {"events": [event]})[0]
    future = request(s.port, "/feedback", {"events": [dict(event, time="9999-12-31T23:59:59Z")]}, headers=auth)[0]
    retried = [request(s.port, "/feedback", {"events": [dict(event, event_id="e1")]}, headers=auth)
               for _ in range(2)]
    s.stop()
    return {"text_plain": plain, "without_token": no_token, "year_9999": future,
            "same_event_id_twice": [c for c, _ in retried], "second_answer": retried[1][1].decode()[:200]}


def case_secrets(binary, models):
    s = Server(binary, models, ['predlog = "postgres://postgres@127.0.0.1:1/test?password=hunter2"'])
    info = request(s.port, "/model_info")[1].decode()
    s.stop(limit=20)
    log = open(s.log.name).read()
    return {"password_in_log": "hunter2" in log, "password_in_model_info": "hunter2" in info,
            "absolute_models_path_in_model_info": os.path.abspath(models) in info}


def case_fallback(binary, models):
    work = tempfile.mkdtemp()
    name = os.listdir(models)[0]
    version = os.listdir(os.path.join(models, name))[0]
    good = os.path.join(work, name, "1")
    shutil.copytree(os.path.join(models, name, version), good)
    broken = os.path.join(work, name, "2")
    shutil.copytree(good, broken)
    pt = os.path.join(broken, "model.pt")
    with open(pt, "r+b") as f:
        f.truncate(os.path.getsize(pt) // 2)
    try:
        s = Server(binary, work, ['predlog = "off"'])
    except SystemExit as e:  # the server exited at start
        return {"predict_status": None, "version_served": None, "exit": str(e).strip().splitlines()[-1][-160:]}
    code, body = request(s.port, "/predict_ctr", {"user_id": "u1"})
    s.stop()
    served = json.loads(body).get("version") if code == 200 else None
    return {"predict_status": code, "version_served": served}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default="target/release/ctr-dl")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--keys", type=int, default=1_500_000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--cases", default="nul,rss,snapshot,slowloris,feedback,secrets,fallback")
    a = ap.parse_args()
    # Servers run in their own temporary folders: make the binaries' paths absolute.
    a.before, a.after = os.path.abspath(a.before), os.path.abspath(a.after)
    work = tempfile.mkdtemp()
    models = os.path.join(work, "models")
    name, version = a.bundle.rstrip("/").split("/")[-2:]
    shutil.copytree(a.bundle, os.path.join(models, name, version))
    spec = json.load(open(os.path.join(a.bundle, "features.json")))["history"]
    cases = a.cases.split(",")
    results = {}
    for tag, binary in [("before", a.before), ("after", a.after)]:
        r = {}
        if "nul" in cases:
            r["nul"] = case_nul(binary, models, tag)
        if "rss" in cases:
            r["rss"] = case_rss(binary, models, ["predlog_queue_bytes = 67108864"] if tag == "after" else [])
        if "slowloris" in cases:
            r["slowloris"] = case_slowloris(binary, models)
        if "feedback" in cases:
            r["feedback"] = case_feedback(binary, models)
        if "secrets" in cases:
            r["secrets"] = case_secrets(binary, models)
        if "fallback" in cases:
            r["fallback"] = case_fallback(binary, models)
        results[tag] = r
        print(tag, json.dumps(r), file=sys.stderr)
    if "snapshot" in cases:
        big = os.path.join(work, "big")
        shutil.copytree(os.path.join(models, name, version), os.path.join(big, name, version))
        big_state(os.path.join(big, name, version, "history.state"), len(spec["keys"]), a.keys)
        for tag, binary in [("before", a.before), ("after", a.after)]:
            results[tag]["snapshot"] = case_snapshot(binary, big, a.seconds)
            print(tag, "snapshot", json.dumps(results[tag]["snapshot"]), file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

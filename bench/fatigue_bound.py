"""How much can history inputs gain from the simulator's fatigue term at most?

The truth's log loss against that of the truth with the fatigue term
`-fatigue * ln(1 + n)` taken out (and the intercept re-solved so the mean
click probability is unchanged): what a model that knew everything but the
(user, ad) exposure history would lose. `n` is rebuilt from the data as the
decayed count of the pair's earlier impressions, without the simulator's
memory limit, so it slightly overstates the repeats of the heaviest users.
FATIGUE and HALF_LIFE_HOURS default to the world the dataset was simulated in
(its _dataset.json).

  .venv/bin/python bench/fatigue_bound.py DATASET_DIR [FATIGUE] [HALF_LIFE_HOURS]
"""
import glob
import json
import math
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main():
    data = sys.argv[1]
    try:
        with open(f"{data}/_dataset.json") as f:
            world = json.load(f)["simulation"]["config"]
    except (OSError, KeyError, TypeError, ValueError) as e:
        if len(sys.argv) < 4:
            sys.exit(f"{data}/_dataset.json: no simulator config ({e}); give FATIGUE HALF_LIFE_HOURS")
        world = {}
    fatigue = float(sys.argv[2]) if len(sys.argv) > 2 else world["fatigue"]
    half_life_h = float(sys.argv[3]) if len(sys.argv) > 3 else world["fatigue_half_life_hours"]
    half_life_ms = half_life_h * 3.6e6
    print(f"fatigue {fatigue}, half-life {half_life_h} h")
    cols = ["time", "user_id", "ad_id", "clicked", "p_click"]
    files = sorted(glob.glob(f"{data}/*/*.parquet"))
    if not files:
        sys.exit(f"{data}: no Parquet shards under train/, valid/, test/")
    t = pa.concat_tables([pq.read_table(f, columns=cols) for f in files])
    ts = t["time"].cast(pa.int64()).to_numpy()
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    users = np.asarray(t["user_id"].to_pylist())[order]
    ads = np.asarray(t["ad_id"].to_pylist())[order]
    y = t["clicked"].to_numpy()[order].astype(float)
    p = t["p_click"].to_numpy()[order]

    lam = math.log(2) / half_life_ms
    state, n = {}, np.zeros(len(ts))
    for i, key in enumerate(zip(users, ads)):
        s = state.get(key)
        if s is None:
            state[key] = (1.0, ts[i])
        else:
            n[i] = s[0] * math.exp(-lam * (ts[i] - s[1]))
            state[key] = (n[i] + 1.0, ts[i])

    z = np.log(p / (1 - p)) + fatigue * np.log1p(n)
    lo, hi = -3.0, 3.0
    for _ in range(60):
        c = (lo + hi) / 2
        lo, hi = (lo, c) if np.mean(1 / (1 + np.exp(-(z + c)))) > p.mean() else (c, hi)
    q = 1 / (1 + np.exp(-(z + c)))

    def logloss(x):
        x = np.clip(x, 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(x) + (1 - y) * np.log(1 - x))

    print(f"{len(ts):,} rows; {np.mean(n > 0.05):.1%} follow an impression of the same "
          f"(user, ad); mean ln(1 + n) {np.mean(np.log1p(n)):.4f}")
    print(f"truth log loss {logloss(p):.5f}; without the fatigue term {logloss(q):.5f}; "
          f"the most history can gain from fatigue: {logloss(q) - logloss(p):.5f}")


if __name__ == "__main__":
    main()

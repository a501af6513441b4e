"""Python LightGBM on the split and parameters of a ctr-dl LightGBM run.

Reads the run's encoded cache (bench/encoded.py) and its parameter string
(runs/<run>/lightgbm_params.txt), builds the same matrix as ctr-dl (each
categorical field's index within the field, then the dense inputs), trains
with the same rounds and early stopping on valid, and prints one JSON line:
fit seconds (lgb.Dataset + lgb.train, as ctr-dl times it), best round, and
test AUC and logloss from scikit-learn.

  .venv/bin/python bench/lightgbm_parity.py runs/<lightgbm run>
"""
import json
import os
import sys
import time
import tomllib

import lightgbm as lgb
import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

sys.path.insert(0, os.path.dirname(__file__))
import encoded  # noqa: E402


def matrix(path, meta, split):
    ids, dense, labels = encoded.load_split(path, split, meta)
    local = (ids - np.asarray(meta["field_offsets"], dtype=np.int32)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([local, dense]), dtype=np.float32), labels


def main():
    run = sys.argv[1]
    info = json.load(open(os.path.join(run, "run.json")))
    cfg = tomllib.load(open(os.path.join(run, "config.toml"), "rb"))["lightgbm"]
    text = open(os.path.join(run, "lightgbm_params.txt")).read().split()
    params = dict(kv.split("=", 1) for kv in text)
    path = info["encoded"]
    meta = encoded.load_meta(path)
    xtr, ytr = matrix(path, meta, "train")
    xva, yva = matrix(path, meta, "valid")
    xte, yte = matrix(path, meta, "test")
    cats = [int(c) for c in params.pop("categorical_feature", "").split(",") if c]
    t0 = time.perf_counter()
    dtrain = lgb.Dataset(xtr, ytr, params=params, categorical_feature=cats or "auto")
    dvalid = lgb.Dataset(xva, yva, reference=dtrain)
    trained = [0]

    def count(env):
        trained[0] = env.iteration + 1

    callbacks = [count]
    if cfg.get("early_stopping_rounds", 50) > 0:
        callbacks.append(lgb.early_stopping(cfg.get("early_stopping_rounds", 50), verbose=False))
    bst = lgb.train(params, dtrain, num_boost_round=cfg.get("num_rounds", 1000),
                    valid_sets=[dvalid], callbacks=callbacks)
    fit = time.perf_counter() - t0
    p = bst.predict(xte, num_iteration=bst.best_iteration or None)
    print(json.dumps({
        "implementation": f"Python lightgbm {lgb.__version__}",
        "fit_seconds": fit,
        "rounds": trained[0],
        "best_round": bst.best_iteration,
        "test_auc": roc_auc_score(yte, p),
        "test_logloss": log_loss(yte, p),
    }))


if __name__ == "__main__":
    main()

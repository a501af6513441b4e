"""DeepCTR-Torch's DeepFM on an encoded cache: training speed, or test AUC/logloss.

Model: deepctr_torch.models.DeepFM with one SparseFeat per field
(vocabulary_size = field_sizes[f]; ids are the cache's global ids minus
field_offsets[f]) and one DenseFeat per dense column, embedding_dim 16,
dnn_hidden_units (400,400,400), ReLU, no batchnorm, dnn_dropout 0,
l2_reg_embedding = l2_reg_linear = 0 (DeepCTR's default 1e-5 adds a full-table
L2 term every step; --l2-emb/--l2-linear set them), Adam(lr 1e-3), loss
"binary_crossentropy" (DeepCTR: sigmoid output + BCE summed over the batch),
device --device (cpu or cuda), torch.set_num_threads(--threads).

--mode speed (default): reads (warmup + steps) * batch training rows (wrapping
  around a short split), calls fit() once untimed on the first warmup*batch rows,
  then times one fit(epochs=1, verbose=0, shuffle=True) call over exactly
  steps*batch rows, subtracting nothing (DeepCTR's own per-epoch set-up, its
  DataLoader and its float<->long conversions are all inside). Prints
  {"impl": "deepctr-torch", "samples_per_sec", "steps", "batch", "seconds", ...},
  with "other_cpu_seconds" as in bare_torch_loop.py.
--mode quality: trains on the whole train split for --epochs epochs (one fit
  call per epoch, shuffled), scores valid after each with sklearn's
  roc_auc_score/log_loss, keeps the best epoch's weights (by valid AUC), and
  prints the test AUC/logloss of that epoch as one JSON line.

DeepCTR feeds the model one float32 matrix, so the ids must be < 2**24 per field
(they are exact in float32 below that); the script checks.

Compatibility patch (at run time, site-packages untouched): deepctr_torch 0.3.0's
__init__ calls utils.check_version, which imports `requests` (not one of its
declared dependencies) and starts a thread that queries PyPI. The script
registers a stub deepctr_torch.utils module first, so no network is touched.

  .venv/bin/python bench/deepctr_torch_speed.py --data /tmp/enc --steps 100
  .venv/bin/python bench/deepctr_torch_speed.py --data /tmp/enc --mode quality --epochs 3
"""
import argparse
import contextlib
import copy
import json
import os
import sys
import time
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import encoded  # noqa: E402

_stub = types.ModuleType("deepctr_torch.utils")
_stub.check_version = lambda version: None
sys.modules.setdefault("deepctr_torch.utils", _stub)
import deepctr_torch  # noqa: E402
from deepctr_torch.inputs import DenseFeat, SparseFeat  # noqa: E402
from deepctr_torch.models import DeepFM  # noqa: E402


def to_matrix(meta, ids, dense, out=None):
    """[n, F+D] float32 in DeepCTR's column order (sparse fields, then dense)."""
    F = meta["num_fields"]
    x = np.empty((len(ids), F + meta["num_dense"]), dtype=np.float32) if out is None else out
    x[:, :F] = ids - np.asarray(meta["field_offsets"], dtype=np.int32)
    x[:, F:] = dense
    return x


def load_matrix(path, meta, split):
    """A whole split as (to_matrix array, labels), filled chunk by chunk to keep peak memory low."""
    n = meta["splits"][split]["rows"]
    x = np.empty((n, meta["num_fields"] + meta["num_dense"]), dtype=np.float32)
    y = np.empty(n, dtype=np.float32)
    at = 0
    for ids, dense, labels in encoded.iter_split(path, split, meta):
        to_matrix(meta, ids, dense, x[at:at + len(labels)])
        y[at:at + len(labels)] = labels
        at += len(labels)
    return x[:at], y[:at]


def build(meta, a):
    cols = [SparseFeat(n, vocabulary_size=s, embedding_dim=a.emb_dim)
            for n, s in zip(meta["field_names"], meta["field_sizes"])]
    cols += [DenseFeat(n, 1) for n in meta["dense_names"]]
    model = DeepFM(cols, cols, dnn_hidden_units=tuple(int(h) for h in a.mlp.split(",") if h),
                   l2_reg_linear=a.l2_linear, l2_reg_embedding=a.l2_emb, dnn_dropout=0.0,
                   seed=a.seed, task="binary", device=a.device)
    model.compile(torch.optim.Adam(model.parameters(), lr=a.lr), "binary_crossentropy", metrics=None)
    return model


def fit(model, x, y, a):
    with contextlib.redirect_stdout(sys.stderr):  # fit() prints the device and a banner
        model.fit([x], y, batch_size=a.batch, epochs=1, verbose=0, shuffle=True)


def scores(model, x, y):
    from sklearn.metrics import log_loss, roc_auc_score
    p = model.predict([x], batch_size=16384).reshape(-1).astype(np.float64)
    return float(roc_auc_score(y, p)), float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", choices=["speed", "quality"], default="speed")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--emb-dim", type=int, default=16)
    ap.add_argument("--mlp", default="400,400,400")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--l2-emb", type=float, default=0.0)
    ap.add_argument("--l2-linear", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1024)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fit() moves each batch there)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    np.random.seed(a.seed)
    meta = encoded.load_meta(a.data)
    if max(meta["field_sizes"]) > 2 ** 24:
        sys.exit("deepctr_torch_speed: a field has more than 2**24 ids, which DeepCTR's float32 input cannot hold")
    model = build(meta, a)
    info = {"impl": "deepctr-torch", "deepctr_torch": deepctr_torch.__version__, "torch": torch.__version__,
            "device": a.device, "threads": a.threads, "batch": a.batch, "emb_dim": a.emb_dim, "mlp": a.mlp}

    if a.mode == "speed":
        total = (a.warmup_steps + a.steps) * a.batch
        ids, dense, y = encoded.load_split(a.data, "train", meta, max_rows=total)
        if len(y) < total:
            idx = np.arange(total) % len(y)
            ids, dense, y = ids[idx], dense[idx], y[idx]
        x = to_matrix(meta, ids, dense)
        w = a.warmup_steps * a.batch
        if w:
            fit(model, x[:w], y[:w], a)
        xt, yt = x[w:], np.ascontiguousarray(y[w:])
        with encoded.OtherCpu() as other:
            t0 = time.perf_counter()
            fit(model, xt, yt, a)
            seconds = time.perf_counter() - t0
        print(json.dumps({**info, "samples_per_sec": round(a.steps * a.batch / seconds, 1), "steps": a.steps,
                          "seconds": round(seconds, 3), "other_cpu_seconds": other.seconds}))
        return

    x, y = {}, {}
    for s in encoded.SPLITS:
        x[s], y[s] = load_matrix(a.data, meta, s)
    history, best = [], None
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        fit(model, x["train"], y["train"], a)
        secs = time.perf_counter() - t0
        auc, ll = scores(model, x["valid"], y["valid"])
        history.append({"epoch": epoch, "valid_auc": round(auc, 6), "valid_logloss": round(ll, 6),
                        "train_seconds": round(secs, 2)})
        print(json.dumps(history[-1]), file=sys.stderr)
        if best is None or auc > best[1]:
            best = (epoch, auc, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    auc, ll = scores(model, x["test"], y["test"])
    b = history[best[0] - 1]
    print(json.dumps({**info, "mode": "quality", "train_rows": len(y["train"]), "epochs": history,
                      "epochs_run": len(history), "fit_seconds": round(sum(h["train_seconds"] for h in history), 2),
                      "best_epoch": best[0], "valid_auc": b["valid_auc"], "valid_logloss": b["valid_logloss"],
                      "test_auc": round(auc, 6), "test_logloss": round(ll, 6)}))


if __name__ == "__main__":
    main()

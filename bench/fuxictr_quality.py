"""FuxiCTR's DeepFM on an encoded cache: test AUC/logloss (or training speed).

FuxiCTR (pip `fuxictr`, installed --no-deps by bench/install_refs.sh) ships its
BaseModel and layers but not its model zoo, so the DeepFM below is the model
zoo's DeepFM_torch put together the same way from fuxictr's own layers:
FeatureEmbedding (one nn.Embedding per field, N(0, 1e-4) init; dense columns
become "numeric" features, each embedded by Linear(1, dim)), FactorizationMachine
(LR with 1-dim embeddings + bias, plus the FM second-order sum), MLP_Block
(default 400-400-400, ReLU, no batchnorm/dropout) over the flattened
embeddings, sigmoid. FuxiCTR's own training recipe is used unchanged:
BaseModel.fit with Adam(lr), BCE (mean), grad-norm clipping at 10, evaluation on
valid after each epoch, best checkpoint by valid AUC, lr x0.1 on a plateau,
early stop after 2 bad epochs; then BaseModel.evaluate on test. Only the input
pipeline is ours: batches are dicts of tensors {field: local id column,
dense name: column, "label": labels} cut from the encoded cache (ids minus
field_offsets), shuffled each epoch for train.

--mode quality (default): prints {"impl": "fuxictr", "test_auc", "test_logloss", ...}.
--mode speed: times train_epoch over exactly --steps batches of the train split
  (after --warmup-steps untimed ones) and prints the same JSON line as the
  other speed scripts, impl "fuxictr".

Run-time patches (site-packages untouched): importing fuxictr's layers pulls in
fuxictr.preprocess (its data pipeline: ray, polars, h5py, pandas), needed only to
build datasets and load pretrained embeddings, and fuxictr.metrics imports polars
for grouped metrics (gAUC, ...) only. Stub modules stand in for
fuxictr.preprocess(.tokenizer) and, during the import only and when it is not
installed, polars; neither is reached by this script.

  .venv/bin/python bench/fuxictr_quality.py --data /tmp/enc --epochs 3
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import time
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import encoded  # noqa: E402


def _stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules.setdefault(name, m)
    return m


def _no_pretrain(*args, **kwargs):
    raise RuntimeError("pretrained embeddings are not supported by bench/fuxictr_quality.py")


try:
    import polars  # noqa: F401
    _polars_stub = None
except ImportError:
    _polars_stub = _stub("polars")
_stub("fuxictr.preprocess", __path__=[])
_stub("fuxictr.preprocess.tokenizer", load_pretrain_emb=_no_pretrain)
import fuxictr  # noqa: E402
from fuxictr.features import FeatureMap  # noqa: E402
from fuxictr.pytorch.layers import FactorizationMachine, FeatureEmbedding, MLP_Block  # noqa: E402
from fuxictr.pytorch.models import BaseModel  # noqa: E402

if _polars_stub is not None:  # keep it out of sight of sklearn/narwhals, which probe sys.modules
    del sys.modules["polars"]


class DeepFM(BaseModel):
    """model_zoo/DeepFM/DeepFM_torch, built from fuxictr's layers."""

    def __init__(self, feature_map, model_id="DeepFM", learning_rate=1e-3, embedding_dim=16,
                 hidden_units=(400, 400, 400), net_dropout=0, batch_norm=False, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=-1, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm = FactorizationMachine(feature_map)
        self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1, hidden_units=list(hidden_units),
                             hidden_activations="ReLU", output_activation=None, dropout_rates=net_dropout,
                             batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        y = self.fm(X, emb) + self.mlp(emb.flatten(start_dim=1))
        return {"y_pred": self.output_activation(y)}


def feature_map(meta, emb_dim):
    fm = FeatureMap("encoded", "")
    for name, size in zip(meta["field_names"], meta["field_sizes"]):
        fm.features[name] = {"type": "categorical", "source": "", "vocab_size": int(size)}
    for name in meta["dense_names"]:
        fm.features[name] = {"type": "numeric", "source": ""}
    fm.labels = ["label"]
    fm.default_emb_dim = emb_dim
    fm.num_fields = fm.get_num_fields()
    fm.set_column_index()
    return fm


class Batches:
    """What FuxiCTR's fit/evaluate need from a data loader: len() and dicts of tensors."""

    def __init__(self, meta, ids, dense, labels, batch, shuffle, seed=0, limit=None):
        self.names = meta["field_names"] + meta["dense_names"]
        off = meta["field_offsets"]  # int32 id columns (FuxiCTR calls .long() per batch)
        self.cols = ([torch.from_numpy(ids[:, f] - np.int32(off[f])) for f in range(len(off))]
                     + [torch.from_numpy(np.ascontiguousarray(dense[:, d])) for d in range(dense.shape[1])])
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))
        self.batch, self.shuffle, self.limit = batch, shuffle, limit
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        n = (len(self.labels) + self.batch - 1) // self.batch
        return n if self.limit is None else min(n, self.limit)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.gen) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch, min(n, (b + 1) * self.batch))
            idx = order[sl] if order is not None else sl
            d = {name: c[idx] for name, c in zip(self.names, self.cols)}
            d["label"] = self.labels[idx]
            yield d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", choices=["quality", "speed"], default="quality")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--emb-dim", type=int, default=16)
    ap.add_argument("--mlp", default="400,400,400")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--embedding-regularizer", type=float, default=0.0)
    ap.add_argument("--net-regularizer", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--log", action="store_true", help="show FuxiCTR's training log on stderr")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    logging.basicConfig(level=logging.INFO if a.log else logging.WARNING, stream=sys.stderr)
    meta = encoded.load_meta(a.data)
    fmap = feature_map(meta, a.emb_dim)
    info = {"impl": "fuxictr", "fuxictr": fuxictr.__version__, "torch": torch.__version__, "threads": a.threads,
            "batch": a.batch, "emb_dim": a.emb_dim, "mlp": a.mlp}
    with tempfile.TemporaryDirectory() as root:
        model = DeepFM(fmap, learning_rate=a.lr, embedding_dim=a.emb_dim,
                       hidden_units=[int(h) for h in a.mlp.split(",") if h],
                       embedding_regularizer=a.embedding_regularizer or None,
                       net_regularizer=a.net_regularizer or None, verbose=0, model_root=root,
                       metrics=["AUC", "logloss"], optimizer="adam", loss="binary_crossentropy")
        os.makedirs(model.model_dir, exist_ok=True)
        if a.mode == "speed":
            total = (a.warmup_steps + a.steps) * a.batch
            ids, dense, y = encoded.load_split(a.data, "train", meta, max_rows=total)
            if len(y) < total:
                idx = np.arange(total) % len(y)
                ids, dense, y = ids[idx], dense[idx], y[idx]
            w = a.warmup_steps * a.batch
            model._max_gradient_norm, model._eval_steps, model._total_steps = 10.0, 1 << 60, 0
            model._stop_training = False
            if w:
                model.train_epoch(Batches(meta, ids[:w], dense[:w], y[:w], a.batch, True, a.seed))
            gen = Batches(meta, ids[w:], dense[w:], y[w:], a.batch, True, a.seed)
            with encoded.OtherCpu() as other:
                t0 = time.perf_counter()
                model.train_epoch(gen)
                seconds = time.perf_counter() - t0
            print(json.dumps({**info, "samples_per_sec": round(a.steps * a.batch / seconds, 1), "steps": a.steps,
                              "seconds": round(seconds, 3), "other_cpu_seconds": other.seconds}))
            return
        data = {s: encoded.load_split(a.data, s, meta) for s in encoded.SPLITS}
        train = Batches(meta, *data["train"], a.batch, True, a.seed)
        valid = Batches(meta, *data["valid"], 16384, False)
        test = Batches(meta, *data["test"], 16384, False)
        t0 = time.perf_counter()
        model.fit(train, epochs=a.epochs, validation_data=valid)
        secs = time.perf_counter() - t0
        v = model.evaluate(valid)
        t = model.evaluate(test)
    print(json.dumps({**info, "mode": "quality", "train_rows": len(data["train"][2]), "epochs_run": model._epoch_index + 1,
                      "fit_seconds": round(secs, 2), "valid_auc": round(float(v["AUC"]), 6),
                      "valid_logloss": round(float(v["logloss"]), 6), "test_auc": round(float(t["AUC"]), 6),
                      "test_logloss": round(float(t["logloss"]), 6)}))


if __name__ == "__main__":
    main()

"""Bare PyTorch DeepFM training loop: the speed floor a hand-written torch loop reaches.

Model (same shape as ctr-dl's and DeepCTR-Torch's DeepFM): one shared
nn.Embedding(vocab_size, emb_dim) for all fields (ids are the cache's global
ids), an FM first-order term from a shared nn.Embedding(vocab_size, 1) plus a
bias (plus a Linear(D, 1) on dense features if any), the FM second-order term,
and an MLP (default 400-400-400, ReLU, no batchnorm/dropout) over the flattened
embeddings (+ dense features) ending in Linear(last, 1, bias=False). Loss:
sigmoid + binary cross-entropy, computed as BCEWithLogitsLoss (same maths).

--optimizer sparse: both embedding tables sparse=True, updated by SparseAdam;
                    Adam for the rest (impl "torch-bare-sparse").
--optimizer dense:  dense embeddings, one Adam over everything ("torch-bare-dense").

Measurement: the (warmup + steps) * batch training rows are read from the
encoded cache's train split (wrapping around if it is shorter) and turned into
tensors on --device (cpu or cuda) before anything is timed; --warmup-steps steps run untimed, then
--steps steps (forward, backward, optimizer step) are timed with perf_counter
(after a CUDA synchronize on both ends when the device is a GPU).
Prints one JSON line: {"impl", "samples_per_sec", "steps", "batch", "seconds", ...};
"other_cpu_seconds" is the CPU time other processes took meanwhile (Linux): far
from 0, the machine was shared and the number is low.

  .venv/bin/python bench/bare_torch_loop.py --data /tmp/enc --steps 100 --optimizer sparse
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import encoded  # noqa: E402


class DeepFM(nn.Module):
    def __init__(self, vocab, fields, dense, emb_dim, mlp, sparse):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_dim, sparse=sparse)
        self.lin = nn.Embedding(vocab, 1, sparse=sparse)
        nn.init.normal_(self.emb.weight, std=1e-4)
        nn.init.normal_(self.lin.weight, std=1e-4)
        self.bias = nn.Parameter(torch.zeros(1))
        self.dense_lin = nn.Linear(dense, 1, bias=False) if dense else None
        layers, width = [], fields * emb_dim + dense
        for h in mlp:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1, bias=False))
        self.mlp = nn.Sequential(*layers)

    def forward(self, ids, dense):
        e = self.emb(ids)                                     # [B, F, k]
        logit = self.lin(ids).sum(dim=(1, 2)) + self.bias    # first order
        s = e.sum(1)
        logit = logit + 0.5 * (s * s - (e * e).sum(1)).sum(1)  # second order
        x = e.flatten(1)
        if self.dense_lin is not None:
            logit = logit + self.dense_lin(dense).squeeze(1)
            x = torch.cat([x, dense], 1)
        return logit + self.mlp(x).squeeze(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--emb-dim", type=int, default=16)
    ap.add_argument("--mlp", default="400,400,400")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--optimizer", choices=["sparse", "dense"], default="sparse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    meta = encoded.load_meta(a.data)
    total = (a.warmup_steps + a.steps) * a.batch
    ids, dense, labels = encoded.load_split(a.data, "train", meta, max_rows=total)
    if len(labels) < total:  # wrap around a short split
        idx = np.arange(total) % len(labels)
        ids, dense, labels = ids[idx], dense[idx], labels[idx]
    ids = torch.from_numpy(ids.astype(np.int64))
    dense = torch.from_numpy(np.ascontiguousarray(dense))
    labels = torch.from_numpy(np.ascontiguousarray(labels))
    ids, dense, labels = ids.to(dev), dense.to(dev), labels.to(dev)
    batches = [(ids[i:i + a.batch], dense[i:i + a.batch], labels[i:i + a.batch])
               for i in range(0, total, a.batch)]

    sparse = a.optimizer == "sparse"
    mlp = [int(h) for h in a.mlp.split(",") if h]
    model = DeepFM(meta["vocab_size"], meta["num_fields"], meta["num_dense"], a.emb_dim, mlp, sparse).to(dev)
    if sparse:
        emb_params = [model.emb.weight, model.lin.weight]
        rest = [p for p in model.parameters() if all(p is not q for q in emb_params)]
        opts = [torch.optim.SparseAdam(emb_params, lr=a.lr), torch.optim.Adam(rest, lr=a.lr)]
    else:
        opts = [torch.optim.Adam(model.parameters(), lr=a.lr)]
    loss_fn = nn.BCEWithLogitsLoss()

    def step(b):
        x, d, y = b
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss = loss_fn(model(x, d), y)
        loss.backward()
        for o in opts:
            o.step()
        return loss

    for b in batches[:a.warmup_steps]:
        step(b)
    sync()
    with encoded.OtherCpu() as other:
        t0 = time.perf_counter()
        for b in batches[a.warmup_steps:]:
            loss = step(b).detach()
        sync()
        seconds = time.perf_counter() - t0
    print(json.dumps({"impl": f"torch-bare-{a.optimizer}", "samples_per_sec": round(a.steps * a.batch / seconds, 1),
                      "steps": a.steps, "batch": a.batch, "seconds": round(seconds, 3),
                      "other_cpu_seconds": other.seconds,
                      "device": a.device, "threads": a.threads, "emb_dim": a.emb_dim, "mlp": mlp,
                      "vocab_size": meta["vocab_size"], "last_loss": round(loss.item(), 5),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()

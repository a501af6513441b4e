"""Reader (and synthetic writer) for ctr-dl's "encoded cache".

The cache that `ctr-dl preprocess` writes, and that ctr-dl's trainer and the
Python references in bench/ all read, is a directory holding:

  encoded.json  {"version": 1, "num_fields": F, "num_dense": D,
                 "field_names": [...], "dense_names": [...],
                 "field_offsets": [F], "field_sizes": [F], "vocab_size": V,
                 "splits": {"train"|"valid"|"test": {"rows": N, "positives": P,
                            "chunks": [{"file": "train-00000.bin", "rows": n}]}}}
  <chunk>.bin   headerless little-endian: ids int32 [n, F] row-major (GLOBAL
                ids: field_offsets[f] already added), dense float32 [n, D],
                labels float32 [n].

Only numpy is needed. Self-test (writes a small synthetic cache, reads it back):
  .venv/bin/python bench/encoded.py --selftest
Write a synthetic cache for the benchmarks:
  .venv/bin/python bench/encoded.py --write /tmp/enc --fields 39 --buckets 100000 --rows 200000
"""
import argparse
import json
import os
import time

import numpy as np

SPLITS = ("train", "valid", "test")


def load_meta(path):
    with open(os.path.join(path, "encoded.json")) as f:
        meta = json.load(f)
    if meta.get("version") != 1:
        raise ValueError(f"{path}: unsupported encoded cache version {meta.get('version')}")
    F = meta["num_fields"]
    if len(meta["field_offsets"]) != F or len(meta["field_sizes"]) != F:
        raise ValueError(f"{path}: field_offsets/field_sizes length != num_fields")
    return meta


def read_chunk(path, meta, chunk):
    """One chunk file -> (ids int32 [n,F] global, dense float32 [n,D], labels float32 [n])."""
    n, F, D = chunk["rows"], meta["num_fields"], meta["num_dense"]
    raw = np.fromfile(os.path.join(path, chunk["file"]), dtype=np.uint8)
    want = n * F * 4 + n * D * 4 + n * 4
    if raw.size != want:
        raise ValueError(f"{chunk['file']}: {raw.size} bytes, expected {want} for {n} rows")
    ids = raw[: n * F * 4].view("<i4").reshape(n, F)
    dense = raw[n * F * 4: n * (F + D) * 4].view("<f4").reshape(n, D)
    labels = raw[n * (F + D) * 4:].view("<f4")
    return ids, dense, labels


def iter_split(path, split, meta=None, shuffle=False, seed=0):
    """Yield (ids, dense, labels) chunk by chunk; shuffle permutes chunk order and rows in a chunk."""
    meta = meta or load_meta(path)
    chunks = list(meta["splits"][split]["chunks"])
    rng = np.random.default_rng(seed)
    if shuffle:
        rng.shuffle(chunks)
    for c in chunks:
        ids, dense, labels = read_chunk(path, meta, c)
        if shuffle:
            p = rng.permutation(len(labels))
            ids, dense, labels = ids[p], dense[p], labels[p]
        yield ids, dense, labels


def load_split(path, split, meta=None, max_rows=None):
    """Whole split (or its first max_rows rows) as three concatenated arrays."""
    meta = meta or load_meta(path)
    parts, have = [], 0
    for ids, dense, labels in iter_split(path, split, meta):
        parts.append((ids, dense, labels))
        have += len(labels)
        if max_rows is not None and have >= max_rows:
            break
    if not parts:
        F, D = meta["num_fields"], meta["num_dense"]
        return np.zeros((0, F), np.int32), np.zeros((0, D), np.float32), np.zeros(0, np.float32)
    ids, dense, labels = (np.concatenate(x) for x in zip(*parts))
    if max_rows is not None:
        ids, dense, labels = ids[:max_rows], dense[:max_rows], labels[:max_rows]
    return ids, dense, labels


def local_ids(ids, meta):
    """Global ids -> per-field indices (0..field_sizes[f]) as int64."""
    return ids.astype(np.int64) - np.asarray(meta["field_offsets"], dtype=np.int64)


def write_synthetic(path, fields=39, buckets=100000, rows=200000, dense=0, chunk_rows=65536,
                    valid_frac=0.1, test_frac=0.1, zipf_a=1.2, seed=0):
    """Write a synthetic encoded cache: `fields` fields of `buckets` ids each, Zipf-ish ids
    (a random permutation per field scatters the hot ids), labels drawn from a hidden
    logistic model (per-id weights + dense weights + one pairwise term), ~20% positives."""
    rng = np.random.default_rng(seed)
    F, V, D = fields, buckets, dense
    os.makedirs(path, exist_ok=True)
    offsets = [f * V for f in range(F)]
    w = rng.normal(0.0, 1.0, size=(F, V)).astype(np.float32) * (2.0 / np.sqrt(F))
    wd = rng.normal(0.0, 0.5, size=D).astype(np.float32)
    perms = [rng.permutation(V).astype(np.int32) for _ in range(F)]
    n_valid, n_test = int(rows * valid_frac), int(rows * test_frac)
    counts = {"train": rows - n_valid - n_test, "valid": n_valid, "test": n_test}
    splits = {}
    for split in SPLITS:
        chunks, positives, left, k = [], 0, counts[split], 0
        while left > 0:
            n = min(chunk_rows, left)
            ranks = (rng.zipf(zipf_a, size=(n, F)) - 1) % V
            local = np.stack([perms[f][ranks[:, f]] for f in range(F)], axis=1)
            x = rng.lognormal(0.0, 1.0, size=(n, D)).astype(np.float32)
            logit = w[np.arange(F), local].sum(1) - 1.5
            if F >= 2:  # one interaction the FM/DNN part can pick up
                logit += 0.5 * np.sign(w[0, local[:, 0]] * w[1, local[:, 1]])
            if D:
                logit += np.log1p(x) @ wd
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
            ids = (local + np.asarray(offsets, np.int32)).astype("<i4")
            name = f"{split}-{k:05d}.bin"
            with open(os.path.join(path, name), "wb") as f:
                f.write(ids.tobytes())
                f.write(x.astype("<f4").tobytes())
                f.write(y.astype("<f4").tobytes())
            chunks.append({"file": name, "rows": n})
            positives += int(y.sum())
            left -= n
            k += 1
        splits[split] = {"rows": counts[split], "positives": positives, "chunks": chunks}
    meta = {"version": 1, "num_fields": F, "num_dense": D,
            "field_names": [f"C{f + 1}" for f in range(F)], "dense_names": [f"I{d + 1}" for d in range(D)],
            "field_offsets": offsets, "field_sizes": [V] * F, "vocab_size": F * V, "splits": splits}
    with open(os.path.join(path, "encoded.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def busy_cpu_seconds():
    """Machine-wide non-idle CPU seconds so far (Linux /proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class OtherCpu:
    """`with OtherCpu() as w: ...` -> w.seconds: CPU seconds that OTHER processes used
    during the block (to flag speed numbers taken on a busy shared machine)."""

    def __enter__(self):
        self.s0, self.p0, self.seconds = busy_cpu_seconds(), time.process_time(), None
        return self

    def __exit__(self, *exc):
        s1 = busy_cpu_seconds()
        if s1 is not None and self.s0 is not None:
            self.seconds = round(max(0.0, s1 - self.s0 - (time.process_time() - self.p0)), 2)


def _selftest():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        meta = write_synthetic(d, fields=5, buckets=50, rows=1000, dense=3, chunk_rows=300, seed=1)
        assert meta == load_meta(d)
        for split in SPLITS:
            ids, dense, y = load_split(d, split)
            s = meta["splits"][split]
            assert len(y) == s["rows"] == sum(c["rows"] for c in s["chunks"]) and dense.shape == (s["rows"], 3)
            assert int(y.sum()) == s["positives"] and set(np.unique(y)) <= {0.0, 1.0}
            loc = local_ids(ids, meta)
            assert (loc >= 0).all() and (loc < np.asarray(meta["field_sizes"])).all()
            sh = list(iter_split(d, split, shuffle=True, seed=3))
            assert sorted(map(tuple, np.concatenate([c[0] for c in sh]).tolist())) == sorted(map(tuple, ids.tolist()))
        assert len(load_split(d, "train", max_rows=350)[2]) == 350
    print("encoded.py selftest ok")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--write", metavar="DIR", help="write a synthetic encoded cache to DIR")
    ap.add_argument("--fields", type=int, default=39)
    ap.add_argument("--buckets", type=int, default=100000)
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--dense", type=int, default=0)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.selftest:
        _selftest()
    if a.write:
        m = write_synthetic(a.write, a.fields, a.buckets, a.rows, a.dense, a.chunk_rows, seed=a.seed)
        print(json.dumps({k: (v["rows"], v["positives"]) for k, v in m["splits"].items()}))

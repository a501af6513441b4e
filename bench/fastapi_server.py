"""The reference stack of the original plan: FastAPI + uvicorn serving a ctr-dl
bundle's model.pt with the same encoding, for bench/serve_speed.sh only (not
product code).

Encoding follows features.json as src/features/map.rs does for the fields a
simulator bundle has: vocabulary fields (0 missing, 1 out of vocabulary,
values from 2) and time parts (1 + hour, 1 + weekday, 1 + is-weekend, from RFC
3339 text or unix seconds). Other field types are refused at start.

  BUNDLE=models/deepfm/1 .venv/bin/uvicorn --app-dir bench fastapi_server:app --port 8102 --workers 2
"""
import json
import os
from datetime import datetime, timezone

import torch
from fastapi import FastAPI, HTTPException, Request

torch.set_num_threads(1)
BUNDLE = os.environ.get("BUNDLE", "models/deepfm/1")
MODEL = torch.jit.load(os.path.join(BUNDLE, "model.pt"))
MODEL.eval()
FEATURES = json.load(open(os.path.join(BUNDLE, "features.json")))
META = json.load(open(os.path.join(BUNDLE, "metadata.json")))
if FEATURES["dense"] or FEATURES.get("history"):
    raise SystemExit("fastapi_server: dense and history inputs are not supported by this reference; "
                     "serve a bundle trained with --set features.history.keys=[] (bench/serve_speed.py)")
FIELDS = []
for f in FEATURES["categorical"]:
    if f["type"] == "vocab":
        FIELDS.append((f["column"], "vocab", f["offset"], {v: 2 + i for i, v in enumerate(f["values"])}))
    elif f["type"] == "time":
        FIELDS.append((f["column"], f["part"], f["offset"], None))
    else:
        raise SystemExit(f"fastapi_server: field type {f['type']} is not supported by this reference")
COLUMNS = {c for c, _ in FEATURES["columns"]}


def seconds(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp())


def encode(obj):
    for k in obj:
        if k not in COLUMNS and k not in ("model", "version"):
            raise HTTPException(400, {"error": f"unknown field `{k}`", "field": k})
    ids = []
    for column, kind, offset, lookup in FIELDS:
        v = obj.get(column)
        if v is None or v == "":
            idx = 0
        elif kind == "vocab":
            idx = lookup.get(v if isinstance(v, str) else str(v), 1)
        else:
            t = datetime.fromtimestamp(seconds(v), tz=timezone.utc)
            idx = 1 + {"hour": t.hour, "weekday": t.weekday(), "weekend": int(t.weekday() >= 5)}[kind]
        ids.append(offset + idx)
    return ids


app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ready"}


@app.post("/predict_ctr")
async def predict_ctr(request: Request):
    obj = await request.json()
    ids = torch.tensor([encode(obj)], dtype=torch.int64)
    with torch.no_grad():
        p = float(MODEL(ids, torch.zeros((1, 0)))[0])
    return {"predicted_ctr": p, "probability": p, "model": META["name"], "version": META["version"]}


@app.post("/batch_predict")
async def batch_predict(request: Request):
    obj = await request.json()
    rows = [encode(o) for o in obj["instances"]]
    ids = torch.tensor(rows, dtype=torch.int64)
    with torch.no_grad():
        p = MODEL(ids, torch.zeros((len(rows), 0))).tolist()
    return {"predictions": p, "model": META["name"], "version": META["version"]}

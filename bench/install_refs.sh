#!/usr/bin/env bash
# Installs the Python reference implementations that bench/deepctr_torch_speed.py
# and bench/fuxictr_quality.py run into .venv (made by scripts/setup.sh), at the
# versions checked with torch 2.13.0; safe to run again (installs only what is
# missing or at another version), never changes the installed torch.
#   deepctr-torch 0.3.0  with its declared deps (tqdm, scikit-learn). Its import
#                        needs `requests` only for a PyPI version check, which
#                        the script stubs out, so requests is not installed.
#   fuxictr 2.3.10       --no-deps: its declared deps (ray[data], polars, pandas,
#                        h5py, pydantic) serve its own data pipeline, which the
#                        script does not use (it stubs those imports); only pyyaml
#                        and tqdm are needed.
#   fastapi 0.165.0, uvicorn 0.54.0: the serving reference of bench/serve_speed.py.
#   oha 1.16.0 (cargo install): the load generator of bench/serve_speed.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DEEPCTR_TORCH=0.3.0
FUXICTR=2.3.10
PYYAML=6.0.3
TQDM=4.70.1
FASTAPI=0.165.0
UVICORN=0.54.0
OHA=1.16.0

if [ ! -x "$PY" ] || ! "$PY" -c 'import torch, numpy, sklearn' 2>/dev/null; then
  echo "install_refs: .venv with torch, numpy and scikit-learn is missing: run scripts/setup.sh first" >&2
  exit 1
fi
have() { "$PY" scripts/venv_has.py "$@"; }
torch_pin="torch==$("$PY" -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0])')"
if ! have "deepctr-torch==$DEEPCTR_TORCH" tqdm; then
  echo "install_refs: installing deepctr-torch==$DEEPCTR_TORCH"
  "$PY" -m pip install --quiet "deepctr-torch==$DEEPCTR_TORCH" "tqdm==$TQDM" "$torch_pin"
fi
if ! have "fuxictr==$FUXICTR" "pyyaml==$PYYAML" tqdm; then
  echo "install_refs: installing fuxictr==$FUXICTR (--no-deps) and pyyaml==$PYYAML"
  echo "install_refs: (pip's complaint that fuxictr lacks ray/polars/pandas/h5py/pydantic is expected)"
  "$PY" -m pip install --quiet "pyyaml==$PYYAML" "tqdm==$TQDM"
  "$PY" -m pip install --quiet --no-deps "fuxictr==$FUXICTR"
fi
if ! have "fastapi==$FASTAPI" "uvicorn==$UVICORN"; then
  echo "install_refs: installing fastapi==$FASTAPI uvicorn==$UVICORN"
  "$PY" -m pip install --quiet "fastapi==$FASTAPI" "uvicorn==$UVICORN" "$torch_pin"
fi
if ! oha --version 2>/dev/null | grep -q "$OHA"; then
  echo "install_refs: installing oha $OHA (cargo install, a few minutes)"
  cargo install --quiet --locked --version "$OHA" oha
fi
# Import check through the scripts themselves (they carry the run-time patches).
"$PY" bench/deepctr_torch_speed.py --help >/dev/null
"$PY" bench/fuxictr_quality.py --help >/dev/null
echo "install_refs: deepctr-torch $DEEPCTR_TORCH, fuxictr $FUXICTR, fastapi $FASTAPI, uvicorn $UVICORN in .venv; oha $OHA"

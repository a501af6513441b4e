#!/usr/bin/env bash
# One-time set-up on a fresh machine, safe to run again: a project-local Python
# venv (.venv) with torch==2.13.0 (libtorch for tch 0.26.0) and the Python
# tools the tests and benchmarks compare against (LightGBM 4.7.0, whose
# lib_lightgbm.so the `lightgbm` feature links), then .venv/libtorch and
# .venv/lightgbm, the stable paths .cargo/config.toml builds against, and
# Debian's SQLite library (rusqlite links it) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
PY=${PYTHON:-python3}
# TORCH_INDEX_URL picks another wheel index, e.g. the CPU-only build for the
# CPU container: https://download.pytorch.org/whl/cpu

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is not installed (https://rustup.rs)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
have() { .venv/bin/python scripts/venv_has.py "$@"; }
if ! have "torch==$TORCH_VERSION" pyarrow scikit-learn tensorboard "lightgbm==4.7.0"; then
  echo "setup: installing torch==$TORCH_VERSION, pyarrow, scikit-learn, tensorboard, lightgbm into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    .venv/bin/python -m pip install --quiet --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
  fi
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION" pyarrow scikit-learn tensorboard \
    "lightgbm==4.7.0"
fi
# Debian packages the build links: the system SQLite (libsqlite3-dev).
has_lib() { compgen -G "/usr/lib/*/$1" >/dev/null || compgen -G "/usr/lib/$1" >/dev/null; }
debs=()
has_lib libsqlite3.so || debs+=(libsqlite3-dev)
if [ ${#debs[@]} -gt 0 ]; then
  echo "setup: installing ${debs[*]} (Debian)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get install -y -qq "${debs[@]}" >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${debs[@]}" >/dev/null; }
fi
# Stable paths for .cargo/config.toml: the package folders of torch (its
# libtorch) and lightgbm (lib/lib_lightgbm.so).
link_package() {
  local dir
  dir=$(.venv/bin/python -c "import importlib.util as u, os; print(os.path.dirname(u.find_spec('$1').origin))")
  ln -sfn "$dir" "$2"
  echo "setup: $1 at $2 -> $dir"
}
link_package torch .venv/libtorch
link_package lightgbm .venv/lightgbm

#!/usr/bin/env bash
# One-time set-up on a fresh machine, safe to run again: a project-local Python
# venv (.venv) with torch==2.13.0 (libtorch for tch 0.26.0) and the Python
# tools the tests and benchmarks compare against (LightGBM 4.7.0, the version
# the `lightgbm` feature builds), CMake >= 3.28 for that build, libclang for
# its bindings, then .venv/libtorch, the stable path .cargo/config.toml builds
# against.
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
if ! have "torch==$TORCH_VERSION" pyarrow scikit-learn tensorboard "lightgbm==4.7.0" cmake; then
  echo "setup: installing torch==$TORCH_VERSION, pyarrow, scikit-learn, tensorboard, lightgbm, cmake into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    .venv/bin/python -m pip install --quiet --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
  fi
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION" pyarrow scikit-learn tensorboard \
    "lightgbm==4.7.0" "cmake>=3.28,<4"
fi
# bindgen (LightGBM's C API bindings) needs libclang.
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 && ! ls /usr/lib/*/libclang.so >/dev/null 2>&1; then
  echo "setup: installing libclang-dev (Debian) for the LightGBM bindings"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get install -y -qq libclang-dev >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq libclang-dev >/dev/null; }
fi
site=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$site" .venv/libtorch
echo "setup: libtorch at .venv/libtorch -> $site"

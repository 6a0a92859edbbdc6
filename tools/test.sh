#!/usr/bin/env bash
# Set up (first run) and run the whole test suite: creates .venv if missing, installs
# edgecnn with every extra it tests (".[all,dev]"), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import edgecnn, tensorflow, tf2onnx, openvino, nncf, ai_edge_litert, onnxruntime, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.edgecnn-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[all,dev]"
    touch .venv/.edgecnn-installed
fi
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"

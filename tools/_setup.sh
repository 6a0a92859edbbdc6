# Sourced by tools/test.sh and tools/demo.sh: create .venv on first use and install edgecnn with
# every extra ("[all,dev]"); reinstall when pyproject.toml changes.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# find_spec locates each package without importing it (importing TensorFlow alone took 6.6 s of every run); edgecnn
# itself is checked by its console script (find_spec would find the source folder in the working directory)
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in
        'tensorflow tf2onnx openvino nncf ai_edge_litert onnxruntime pytest xdist'.split()))" 2>/dev/null \
   || [ ! -x .venv/bin/edgecnn ] || [ pyproject.toml -nt .venv/.edgecnn-installed ]; then
    if .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[all,dev]"; then
        touch .venv/.edgecnn-installed
    else
        echo "tools/_setup.sh: installing edgecnn into .venv failed (see pip's message above)" >&2
        return 1
    fi
fi
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

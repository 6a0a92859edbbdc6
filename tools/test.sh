#!/usr/bin/env bash
# Set up (first run) and run the whole test suite: creates .venv if missing, installs
# edgecnn with every extra it tests (".[all,dev]"), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
exec .venv/bin/python -m pytest "$@"

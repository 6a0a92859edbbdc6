#!/usr/bin/env bash
# Set up (first run) and run the whole test suite: creates .venv if missing, installs edgecnn with every extra it
# tests (".[all,dev]"), then runs pytest in two parts: everything but the timing-sensitive tests on every core
# (pytest-xdist, one test file per worker at a time, so module fixtures are built once; in collection order, with
# the conftest's START_FIRST files first), then the tests marked
# `serial` alone, so that no other test's load moves their clocks. Extra arguments go to both parts.
# EDGECNN_TEST_WORKERS=N sets the number of workers (default: the number of cores; 0 runs all in one process).
set -uo pipefail
source "$(dirname "$0")/_setup.sh" || exit 1
workers="${EDGECNN_TEST_WORKERS:-$(nproc)}"
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
# what the session fixtures build (a trained LeNet-5, its conversion, a device venv), made once for both parts
EDGECNN_TEST_SHARED="$(mktemp -d -t edgecnn-tests-XXXXXX)"
export EDGECNN_TEST_SHARED
trap 'rm -rf "$EDGECNN_TEST_SHARED"' EXIT
.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
parallel=$?
EDGECNN_TEST_PART=serial .venv/bin/python -m pytest "$@"
serial=$?
[ "$serial" = 5 ] && serial=0  # none selected (a -k that matches only parallel tests)
[ "$parallel" = 5 ] && parallel=0
echo "tools/test.sh: parallel part exit $parallel, serial part exit $serial"
[ "$parallel" = 0 ] && [ "$serial" = 0 ]

#!/usr/bin/env bash
# Set up (first run) and run the whole path on the bundled digits: train -> convert -> profile ->
# classify a video -> demo-out/report.md. Extra arguments go to 'edgecnn demo'.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
exec .venv/bin/edgecnn demo --force "$@"

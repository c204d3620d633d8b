#!/usr/bin/env bash
# Start and stop the local Google Cloud Pub/Sub emulator for LMS, from a shell:
#
#   scripts/emulator.sh start    start it on a free port (or $EMULATOR_PORT), wait until it serves
#   scripts/emulator.sh stop     stop it: TERM its whole process group, then KILL
#   scripts/emulator.sh status   say whether it runs, and where
#   scripts/emulator.sh host     print its host:port (for PUBSUB_EMULATOR_HOST)
#
# The launcher is lms.devtools.emulator (the one the tests and benchmarks use); this only runs
# it with the project's interpreter ($PYTHON, else .venv's) and keeps its state in
# $EMULATOR_RUN_DIR (default .run/ at the repository root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EMULATOR_RUN_DIR="${EMULATOR_RUN_DIR:-$ROOT/.run}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m lms.devtools.emulator "$@"

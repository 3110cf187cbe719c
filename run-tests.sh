#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh requirements-dev.txt
exec .venv/bin/python -m pytest "$@"

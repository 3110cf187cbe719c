#!/usr/bin/env bash
# Set up (first run only) and start the clinician app on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh requirements.txt
exec .venv/bin/python -m streamlit run app/main.py --server.address="${ADDRESS:-localhost}" "$@"

#!/usr/bin/env bash
# The test suite, in the project's own virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# The main job: make the default Multi-MNIST data (if missing), train AIR for the default budget,
# evaluate it on held-out scenes and draw the figures. Extra arguments go to `airscene run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/airscene run "$@"

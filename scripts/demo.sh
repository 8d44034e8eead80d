#!/usr/bin/env bash
# Install MedAlliance into ./.venv and start the demo alliance at http://127.0.0.1:8000.
# Extra arguments go to `medalliance demo` (e.g. --port 8080, --seed-only).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ""
exec .venv/bin/medalliance demo "$@"

#!/usr/bin/env bash
# Install MedAlliance with its test dependencies into ./.venv and run the test suite.
# Database: MEDALLIANCE_TEST_DATABASE_URL, else PostgreSQL on 127.0.0.1:5432 if it
# answers, else a temporary SQLite file. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"
exec .venv/bin/python -m pytest "$@"

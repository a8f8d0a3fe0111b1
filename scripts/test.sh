#!/usr/bin/env bash
# Set up (see setup.sh --test), lint, then run the whole test suite, browser tests included.
# This is the README's test command, and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check qa tests bench app.py
.venv/bin/ruff format --check qa tests bench app.py
.venv/bin/python -m pytest "$@"  # offline: tests/conftest.py sets the environment

#!/usr/bin/env bash
# Set up the environment (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$repo/devtools/bootstrap.sh" | tail -n 1)"
export PATH="$(dirname "$py"):$PATH"   # antechamber, sqm and packmol live in the venv's bin/
cd "$repo"
"$py" -m ruff check openmm_cgml tests benchmarks examples
# one pytest-xdist worker per core, a test file's tests kept together on one worker (module fixtures built once);
# tests/conftest.py keeps each worker to one CPU thread.  "-n 0" (or a later -n) overrides it.
exec "$py" -m pytest -n auto --dist loadfile "$@"

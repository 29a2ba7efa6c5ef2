#!/usr/bin/env bash
# Set up the environment (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$repo/devtools/bootstrap.sh" | tail -n 1)"
export PATH="$(dirname "$py"):$PATH"   # antechamber, sqm and packmol live in the venv's bin/
cd "$repo"
"$py" -m ruff check openmm_cgml tests benchmarks examples
# one pytest-xdist worker per core (at most 8: each holds torch and OpenMM in memory; CGML_TEST_WORKERS sets it), a
# test file's tests kept together on one worker (module fixtures built once); tests/conftest.py keeps each worker to
# one CPU thread.  "-n 0" (or a later -n) overrides it.
cores="$(nproc 2>/dev/null || echo 2)"
workers="${CGML_TEST_WORKERS:-$(( cores < 8 ? cores : 8 ))}"
exec "$py" -m pytest -n "$workers" --dist loadfile "$@"

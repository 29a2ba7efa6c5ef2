#!/usr/bin/env bash
# Set up the environment (if needed) and run the end-to-end demo on a small built-in system.
# Extra arguments go to `cgml demo` (see `cgml demo --help`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$repo/devtools/bootstrap.sh" | tail -n 1)"
export PATH="$(dirname "$py"):$PATH"
cd "$repo"
exec "$py" -m openmm_cgml.cli demo "$@"

#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install openmm_cgml into it.
# Finds a Python >= 3.12 by itself (3.12 first: the pinned stack is verified on it);
# prints the venv's python path on the last line.
# Environment: CGML_VENV (default: <repo>/.venv), CGML_PYTHON (an interpreter to use).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CGML_VENV:-$repo/.venv}"

is_ok() {  # is $1 a Python >= 3.12?
  [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
  local cand
  for cand in "${CGML_PYTHON:-}" python3.12 python3 python3.13; do
    [ -n "$cand" ] || continue
    cand="$(command -v "$cand" 2>/dev/null || true)"
    if is_ok "$cand"; then echo "$cand"; return 0; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local v
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])' | sort -V); do
      cand="$(PYENV_VERSION="$v" pyenv which python3 2>/dev/null || true)"
      if is_ok "$cand"; then echo "$cand"; return 0; fi
    done
  fi
  for cand in /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9] "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
    if is_ok "$cand"; then echo "$cand"; return 0; fi
  done
  return 1
}

stamp_of() { cat "$repo/pyproject.toml" "$repo/devtools/constraints.txt" | sha256sum | cut -d' ' -f1; }

if [ ! -x "$venv/bin/python" ] || ! is_ok "$venv/bin/python"; then
  py="$(find_python)" || {
    echo "openmm_cgml needs Python >= 3.12 and none was found (tried \$CGML_PYTHON, python3.13, python3.12," >&2
    echo "python3, pyenv and the usual install paths). Install one, or set CGML_PYTHON=/path/to/python3.12." >&2
    exit 1
  }
  echo "bootstrap: creating $venv with $py ($("$py" --version 2>&1))" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi

need_gb=7   # the pinned stack takes about 5.7 GB (PyPI's torch 2.12.1 brings its CUDA libraries) plus unpacking room

check_disk() {  # refuse early, with the numbers, rather than fail half-way through pip with ENOSPC
  local dir avail_kb
  dir="$(dirname "$venv")"
  avail_kb="$(df -Pk "$dir" 2>/dev/null | awk 'NR == 2 {print $4}')"
  [ -n "$avail_kb" ] || return 0
  local tmp_kb
  tmp_kb="$(df -Pk "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR == 2 {print $4}')"
  if [ "$avail_kb" -lt $((need_gb * 1024 * 1024)) ] || { [ -n "$tmp_kb" ] && [ "$tmp_kb" -lt $((1024 * 1024)) ]; }; then
    echo "bootstrap: not enough free disk to install the pinned stack: $((avail_kb / 1024)) MB free under $dir" >&2
    echo "  and $(( ${tmp_kb:-0} / 1024 )) MB under ${TMPDIR:-/tmp}; about $need_gb GB (and 1 GB of temporary space) is needed." >&2
    echo "  Free some space, or set CGML_VENV to a path on a larger disk (and TMPDIR for pip's unpacking)." >&2
    exit 1
  fi
}

stamp="$(stamp_of)"
if [ "$(cat "$venv/.cgml-stamp" 2>/dev/null || true)" != "$stamp" ]; then
  [ -d "$venv/lib" ] && ls "$venv"/lib/python3*/site-packages/torch >/dev/null 2>&1 || check_disk
  echo "bootstrap: installing openmm_cgml and its pinned dependencies (a few minutes the first time)" >&2
  # --no-cache-dir: the wheels (about 3.5 GB) are not kept a second time in pip's cache
  "$venv/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --no-cache-dir -c "$repo/devtools/constraints.txt" -e "$repo[all]" >&2
  echo "$stamp" > "$venv/.cgml-stamp"
else
  echo "bootstrap: $venv is up to date" >&2
fi
# the C++ pair force, compiled against this OpenMM (seconds; cached until the sources or OpenMM change)
if ! plugin="$("$venv/bin/python" -m openmm_cgml.forces.compiled 2>&1)"; then
  echo "bootstrap: the C++ pair force was not compiled, so tabulated models use OpenMM's custom forces: $plugin" >&2
fi
echo "$venv/bin/python"

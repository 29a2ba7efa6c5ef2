"""Programs from Debian packages that some tests need (Chromium, LAMMPS, GROMACS).

:func:`require_program` finds one; when it is missing and the tests run as root with ``apt-get`` (as CI does),
it installs the package; otherwise the test is skipped, saying how to install it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

#: every Debian package a test needs: installed together, in one apt transaction, the first time one is missing
PACKAGES = ("chromium", "lammps", "gromacs")


def require_program(names: tuple[str, ...], package: str) -> str:
    """The path of the first of ``names`` on PATH, installing Debian's ``package`` first when it is missing."""
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=900)
        wanted = [package, *(p for p in PACKAGES if p != package)]
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *wanted], env=env,
                              capture_output=True, text=True, timeout=1200)
        for name in names:
            if proc.returncode == 0 and shutil.which(name):
                return shutil.which(name)
        pytest.fail(f"apt-get install {package} failed: {proc.stderr[-2000:]}")
    pytest.skip(f"{names[0]} is not installed, and these tests are not root to install it (apt-get install {package})")

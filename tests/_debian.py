"""Programs from Debian packages that some tests need (Chromium, LAMMPS, GROMACS).

:func:`require_program` finds one; when it is missing and the tests run as root with ``apt-get`` (as CI does),
it installs the package; otherwise the test is skipped, saying how to install it.  Under pytest-xdist several
workers may need a package at once: the install is serialised by a file lock (the first worker installs all of
:data:`PACKAGES`, the others find them when they get the lock), and apt waits for dpkg's own lock too."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

#: every Debian package a test needs: installed together, in one apt transaction, the first time one is missing
PACKAGES = ("chromium", "lammps", "gromacs")


def require_program(names: tuple[str, ...], package: str) -> str:
    """The path of the first of ``names`` on PATH, installing Debian's ``package`` first when it is missing."""
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        with open(Path(tempfile.gettempdir()) / "openmm_cgml_tests_apt.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; released when the file closes
            for name in names:  # another worker may have installed it while this one waited
                if shutil.which(name):
                    return shutil.which(name)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            wait = ["-o", "DPkg::Lock::Timeout=600"]
            subprocess.run(["apt-get", *wait, "update", "-qq"], env=env, capture_output=True, timeout=900)
            wanted = [package, *(p for p in PACKAGES if p != package)]
            proc = subprocess.run(["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", *wanted],
                                  env=env, capture_output=True, text=True, timeout=1200)
        for name in names:
            if proc.returncode == 0 and shutil.which(name):
                return shutil.which(name)
        pytest.fail(f"apt-get install {package} failed: {proc.stderr[-2000:]}")
    pytest.skip(f"{names[0]} is not installed, and these tests are not root to install it (apt-get install {package})")

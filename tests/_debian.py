"""Programs from Debian packages that some tests need (Chromium, LAMMPS, GROMACS, an OpenCL runtime).

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
#: an OpenCL platform on the CPU (pocl) and the headers the compiled pair force's OpenCL kernels are built with
OPENCL_PACKAGES = ("ocl-icd-libopencl1", "pocl-opencl-icd", "opencl-c-headers")


def require_program(names: tuple[str, ...], package: str) -> str:
    """The path of the first of ``names`` on PATH, installing Debian's ``package`` first when it is missing."""
    found = lambda: next((shutil.which(n) for n in names if shutil.which(n)), None)  # noqa: E731
    if found():
        return found()
    if _apt_install([package, *(p for p in PACKAGES if p != package)], done=found):
        return found()
    pytest.fail(f"apt-get install {package} did not install {names[0]}")


def require_opencl() -> None:
    """An OpenCL platform in OpenMM and the OpenCL C headers (the compiled pair force's device kernel is built
    against them): Debian's pocl, a CPU implementation of OpenCL, is installed when they are missing, and OpenMM's
    OpenCL plugin loaded into this process."""
    import openmm
    import openmm.version

    def ready() -> bool:
        names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
        return "OpenCL" in names and any(Path(d, "CL", "cl.h").is_file() for d in ("/usr/include", "/usr/local/include"))

    def load_plugin() -> bool:
        if "OpenCL" not in {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}:
            plugin = Path(openmm.version.openmm_library_path) / "plugins" / "libOpenMMOpenCL.so"
            try:
                openmm.Platform.loadPluginLibrary(str(plugin))
            except Exception:  # noqa: BLE001 - OpenMM says why in its message; ready() decides
                pass
        return ready()

    if ready() or _apt_install(list(OPENCL_PACKAGES), done=load_plugin):
        return
    pytest.fail("apt-get install " + " ".join(OPENCL_PACKAGES) + " did not give OpenMM an OpenCL platform")


def _apt_install(wanted: list[str], *, done) -> bool:
    """Install Debian packages (as root, with apt-get; otherwise skip the test saying how): True when ``done()``
    holds afterwards.  Serialised across pytest-xdist workers by a file lock; ``done()`` is asked again first."""
    if not (os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.skip(f"{wanted[0]} is not installed, and these tests are not root to install it "
                    f"(apt-get install {' '.join(wanted)})")
    with open(Path(tempfile.gettempdir()) / "openmm_cgml_tests_apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; released when the file closes
        if done():  # another worker may have installed it while this one waited
            return True
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait = ["-o", "DPkg::Lock::Timeout=600"]
        subprocess.run(["apt-get", *wait, "update", "-qq"], env=env, capture_output=True, timeout=900)
        proc = subprocess.run(["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", *wanted],
                              env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"apt-get install {' '.join(wanted)} failed: {proc.stderr[-2000:]}")
    return done()

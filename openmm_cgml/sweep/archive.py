"""Archiving a sweep: what learning and resuming need, without the trajectories.

A sweep directory holds every sample's datasets (the AA reference alone is tens of MB a sample), so it is too
big to share or to keep beside the code.  :func:`archive_sweep` copies the part that carries the results into a
new sweep directory: the definition, the samples and the index, every sample's record (``result.json``, or
``failed.json``), and of a finished sample's ``work/`` the small files: the step configurations and
``stages.json``, the mapping, the IBI output (``pair_tables.json``, ``bonded_terms.json``, ``convergence.json``),
the comparison and the viscosities (every ``*.json``, ``*.yaml`` and ``*.md`` file, at most ``max_file_mb`` each).
With ``references=True`` the mapped AA reference (``cg_reference.h5``) is kept too, which
:func:`~openmm_cgml.learn.evaluate_potential_model` needs to run a predicted potential.

The archive is itself a sweep directory: ``cgml learn`` reads it, and ``cgml sweep CONFIG -o ARCHIVE`` continues
the sweep there, computing only the samples it does not hold.  It is written to a temporary directory beside the
destination and renamed into place, so a crash leaves the previous archive (or none), never half of one.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .._io import read_json
from ..exceptions import ConfigurationError, DatasetError

__all__ = ["archive_sweep"]

logger = logging.getLogger(__name__)

#: Files of the sweep directory itself that an archive keeps.
TOP_FILES = ("sweep.yaml", "samples.json", "index.csv", "run.json")
#: Suffixes of the files of a finished sample's ``work/`` that an archive keeps (each at most ``max_file_mb``).
WORK_SUFFIXES = (".json", ".yaml", ".md")


def archive_sweep(directory, destination, *, references: bool = False, max_file_mb: float = 5.0) -> dict:
    """Copy the results of the sweep in ``directory`` to ``destination`` (module docstring); returns what was kept:
    ``{"samples": n finished, "failed": n, "files": n, "bytes": n, "destination": path}``.

    Raises
    ------
    DatasetError
        ``directory`` is not a sweep directory (no ``sweep.yaml`` or ``samples.json``).
    ConfigurationError
        ``destination`` is ``directory`` or inside it, or exists and is not a sweep directory (it would be replaced).
    """
    src = Path(directory).resolve()
    dest = Path(destination).resolve()
    for name in ("sweep.yaml", "samples.json"):
        if not (src / name).exists():
            raise DatasetError(f"{src} is not a sweep directory: it has no {name} (run `cgml sweep` first)")
    if dest == src or dest.is_relative_to(src):
        raise ConfigurationError(f"the archive {dest} must lie outside the sweep directory {src}")
    if dest.exists() and not (dest / "sweep.yaml").exists():
        raise ConfigurationError(f"{dest} exists and is not a sweep archive: refusing to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    kept = {"samples": 0, "failed": 0, "files": 0, "bytes": 0}
    limit = max_file_mb * 1024 ** 2

    def copy(path: Path, relative: Path) -> None:
        target = tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        kept["files"] += 1
        kept["bytes"] += path.stat().st_size

    try:
        for name in TOP_FILES:
            if (src / name).exists():
                copy(src / name, Path(name))
        samples = read_json(src / "samples.json", "the sweep's samples")
        for sample in samples:
            d = src / "samples" / sample["sample_id"]
            rel = Path("samples") / sample["sample_id"]
            if (d / "result.json").exists():
                copy(d / "result.json", rel / "result.json")
                kept["samples"] += 1
                work = d / "work"
                for path in sorted(work.rglob("*")) if work.is_dir() else []:
                    keep = path.suffix in WORK_SUFFIXES and path.stat().st_size <= limit
                    keep = keep or (references and path.relative_to(work) == Path("cg_reference.h5"))
                    if path.is_file() and keep:
                        copy(path, rel / "work" / path.relative_to(work))
            elif (d / "failed.json").exists():
                copy(d / "failed.json", rel / "failed.json")
                kept["failed"] += 1
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.rename(dest, old)
        os.rename(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("archived %d finished and %d failed samples of %s into %s (%d files, %.1f MB)", kept["samples"],
                kept["failed"], src, dest, kept["files"], kept["bytes"] / 1024 ** 2)
    return {**kept, "destination": str(dest)}

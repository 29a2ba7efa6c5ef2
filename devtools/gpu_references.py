"""Run a study's prepared AA references on another machine (a GPU node without OpenFF), all at once, and bring
them back.

``cgml temperature CONFIG --prepare-references`` builds and minimises every temperature's liquid here (the steps
that need OpenFF and its charge engine) and leaves in each ``T<K>/`` folder a ``reference.yaml`` and the checkpoint
that :func:`openmm_cgml.workflows.run_reference` resumes from.  This script does the rest elsewhere:

- ``run STUDY --out OUT`` (on the GPU machine; needs OpenMM, this package and its light dependencies, not OpenFF):
  resumes every prepared, unfinished reference of ``STUDY`` at once, one process each (a small system leaves most of
  a GPU idle, so several share it), with the package's own ``run_reference`` and the folder's configuration
  unchanged (the checkpoint refuses any other).  After ``--budget-s`` seconds of wall time the runs still going are
  stopped (they resume from their last checkpoint).  Then each folder's ``aa.h5``, ``aa.h5.chk`` and log go into
  ``OUT/<folder>.tar``, and ``OUT/run.json`` records the machine, OpenMM's version and platform, and each run's
  exit status, where its checkpoint stood before and after (stage, step, frames), wall time, frames and ns/day.
- ``ingest STUDY OUT`` (here): checks each tar (only those files, of a folder of ``STUDY``), and that the checkpoint
  belongs to the folder's configuration, then puts the files in place atomically.  A finished reference is then
  complete for ``cgml temperature``, which goes on from its mapping step.

The runs write portable checkpoints (OpenMM State XML, ``run_reference(portable_checkpoints=True)``): a run stopped
at the budget resumes on any platform, here on the CPU too (statistically equivalent, not bit-identical).  A
reference advanced here on the CPU (``cgml temperature`` writes OpenMM's binary checkpoints) resumes there as well:
its state is read on the CPU platform, which every OpenMM has, and moved to the GPU's.

On a GPU machine without OpenMM and without a network (an image with PyTorch and CUDA 13's libraries), carry the
wheels: here ``pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_34_x86_64
--platform manylinux2014_x86_64 -d .whl openmm==8.6.1 openmm-cuda-13==8.6.1 pydantic pydantic-core annotated-types
typing-inspection pint flexcache flexparser platformdirs pymbar numexpr`` (the versions of your environment), there
``pip install --no-index --no-deps --target /tmp/site .whl/*.whl`` and ``ln -s <site-packages>/nvidia
/tmp/site/nvidia`` (the CUDA plugin finds ``libcufft`` and ``libnvrtc`` through its RUNPATH), with
``PYTHONPATH=/tmp/site:<repository>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as _platform
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

#: The files of a reference folder that travel back (the dataset, its checkpoint, the run's log and record).
RETURNED = ("aa.h5", "aa.h5.chk", "gpu.log", "gpu_result.json")


def _folders(study: Path) -> list[Path]:
    folders = sorted(p.parent for p in study.glob("*/reference.yaml"))
    if not folders:
        raise SystemExit(f"{study} has no <folder>/reference.yaml: prepare it first (cgml temperature CONFIG "
                         "--prepare-references)")
    return folders


def _completed(folder: Path) -> bool:
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.exceptions import DatasetError

    try:
        return bool(open_dataset(folder / "aa.h5").metadata.get("completed"))
    except DatasetError:
        return False


def _one(folder: Path) -> int:
    """One reference (a child process of ``run``): resume it with its own configuration."""
    import logging

    import yaml

    from openmm_cgml._io import atomic_write_text
    from openmm_cgml.workflows.reference import run_reference

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = yaml.safe_load((folder / "reference.yaml").read_text())
    started = time.perf_counter()
    result = run_reference(settings, folder / "aa.h5", portable_checkpoints=True)
    record = {"frames": result.n_frames, "npt_density_g_cm3": result.npt_density, "ns_per_day": result.ns_per_day,
              "wall_s": time.perf_counter() - started}
    atomic_write_text(folder / "gpu_result.json", json.dumps(record, indent=1) + "\n")
    return 0


def _progress(folder: Path) -> dict:
    """Where a reference stands: its checkpoint's stage, step and frames (the step of a portable checkpoint; a
    binary one does not say)."""
    from openmm_cgml._checkpoint import read_checkpoint

    header, _ = read_checkpoint(folder / "aa.h5.chk")
    return {"stage": header["stage"], "step": header.get("step") if header["payload"] == "portable" else None,
            "frames": int(header.get("n_frames", 0))}


def _machine() -> dict:
    import openmm

    from openmm_cgml.reference.run import choose_platform

    info = {"host": _platform.node(), "python": sys.version.split()[0], "openmm": openmm.__version__,
            "platform": choose_platform("auto").getName(), "cpus": os.cpu_count()}
    try:
        info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = None
    return info


def run(study: Path, out: Path, budget_s: float, poll_s: float = 2.0) -> dict:
    """Resume every prepared, unfinished reference of ``study`` at once; pack them into ``out``."""
    from openmm_cgml._io import atomic_path, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    folders = _folders(study)
    missing = [f.name for f in folders if not (f / "aa.h5.chk").exists()]
    if missing:
        raise SystemExit(f"no checkpoint in {', '.join(missing)}: prepare them first (cgml temperature CONFIG "
                         "--prepare-references)")
    pending = [f for f in folders if not _completed(f)]
    before = {f: _progress(f) for f in pending}
    record = {"machine": _machine(), "budget_s": budget_s, "runs": {}}
    started = time.perf_counter()
    procs = {}
    for folder in pending:
        log = open(folder / "gpu.log", "a")  # noqa: SIM115 - closed below, after the process ends
        procs[folder] = (subprocess.Popen([sys.executable, __file__, "one", str(folder)], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True), log)
    stopped = set()
    while any(p.poll() is None for p, _ in procs.values()):
        if time.perf_counter() - started > budget_s:
            for folder, (p, _) in procs.items():
                if p.poll() is None:
                    stopped.add(folder)
                    os.killpg(p.pid, signal.SIGTERM)
            deadline = time.perf_counter() + 30
            while any(p.poll() is None for p, _ in procs.values()) and time.perf_counter() < deadline:
                time.sleep(0.5)
            for p, _ in procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            break
        time.sleep(poll_s)
    for folder, (p, log) in procs.items():
        log.close()
        result = folder / "gpu_result.json"
        record["runs"][folder.name] = {
            "returncode": p.returncode, "stopped_at_budget": folder in stopped, "completed": _completed(folder),
            "from": before[folder], "to": _progress(folder),
            **(json.loads(result.read_text()) if result.exists() and p.returncode == 0 else {})}
    record["wall_s"] = time.perf_counter() - started
    for folder in folders:
        with atomic_path(out / f"{folder.name}.tar") as tmp, tarfile.open(tmp, "w") as tar:
            for name in RETURNED:
                if (folder / name).exists():
                    tar.add(folder / name, arcname=f"{folder.name}/{name}")
    atomic_write_text(out / "run.json", json.dumps(record, indent=1) + "\n")
    return record


def ingest(study: Path, out: Path) -> dict:
    """Check the tars of ``out`` and put their files into ``study``'s folders (atomically, one file at a time)."""
    from openmm_cgml._checkpoint import identity_hash, read_checkpoint
    from openmm_cgml.config import load_config
    from openmm_cgml.reference.run import ReferenceConfig, _identity

    folders = {f.name: f for f in _folders(study)}
    tars = sorted(out.glob("*.tar"))
    if not tars:
        raise SystemExit(f"{out} holds no <folder>.tar")
    done = {}
    for path in tars:
        folder = folders.get(path.stem)
        if folder is None:
            raise SystemExit(f"{path.name}: {study} has no folder {path.stem} with a reference.yaml")
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            wanted = {f"{folder.name}/{name}" for name in RETURNED}
            bad = [m.name for m in members if m.name not in wanted or not m.isfile()]
            if bad:
                raise SystemExit(f"{path.name}: unexpected members {bad}; expected plain files among {sorted(wanted)}")
            staged = {}
            for m in members:
                tmp = folder / f".{Path(m.name).name}.ingest"
                with tar.extractfile(m) as src, open(tmp, "wb") as dst:
                    dst.write(src.read())
                staged[Path(m.name).name] = tmp
        if "aa.h5.chk" in staged:
            config = load_config(folder / "reference.yaml", ReferenceConfig)
            header, _ = read_checkpoint(staged["aa.h5.chk"])
            if header.get("identity") != identity_hash(_identity(config)):
                for tmp in staged.values():
                    tmp.unlink()
                raise SystemExit(f"{path.name}: its checkpoint belongs to another configuration than "
                                 f"{folder / 'reference.yaml'}")
        for name, tmp in staged.items():
            os.replace(tmp, folder / name)
        done[folder.name] = {"files": sorted(staged), "completed": _completed(folder)}
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="resume every prepared reference at once (on the GPU machine)")
    p.add_argument("study", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget-s", type=float, default=480.0)
    p = sub.add_parser("ingest", help="put the returned references in place (here)")
    p.add_argument("study", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("one", help=argparse.SUPPRESS)
    p.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "one":
        return _one(args.folder)
    if args.command == "run":
        print(json.dumps(run(args.study, args.out, args.budget_s), indent=1))
    else:
        print(json.dumps(ingest(args.study, args.out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

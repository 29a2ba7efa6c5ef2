"""Extend a finished AA reference run on a GPU, recording its mapped (bead) trajectory (issue "Polymer melts").

The C32 melt of ``study_melt_start.py`` (48 n-C32, Sage 2.2.0 with AM1-BCC, 3 Da hydrogens at 4 fs, 400 K, NVT at
its NPT density, Bussi thermostat tau 1 ps) has 1 ns of production: its end-to-end autocorrelation was still 0.67 at
500 ps.  Decorrelating the chains takes several ns, about a day on two CPU cores; a GPU does it in minutes.  This
script continues that production exactly where it stopped (the run's own System, integrator and last state), on
another machine, and brings back only what the comparison needs: the bead positions of the workflow's mapping.

Three steps:

- ``prepare`` (here, with the package): reads the run's checkpoint into a CPU Context, and writes to ``--bundle``
  the System, the production integrator and the last State as OpenMM XML, the mapping's position matrix
  (``scipy.sparse.save_npz``), and ``bundle.json`` (the run's step, time and potential energy, the files'
  SHA-256).  It checks that the matrix maps the run's last AA frame onto the mapped dataset's last frame.
- ``run`` (on the GPU machine; needs only OpenMM, NumPy and SciPy): loads the bundle (refusing files whose SHA-256
  differs from what ``prepare`` wrote, whose System it read with the package's refusal of Python callbacks), checks the potential energy of the state against the CPU's, and integrates for ``--budget-s`` seconds
  of wall time (or ``--max-ns``), recording bead positions every ``--report-steps`` steps into
  ``chunk_NN.npz`` (positions float32, step, time, potential and kinetic energy), written atomically,
  ``--chunk-frames`` frames each; a State XML with velocities every few chunks and at the end; ``run.json`` with
  the platform, its properties, ns/day and the frames written.  Positions are OpenMM's unwrapped ones, so the
  beads' trajectories are continuous.
- ``ingest`` (here): checks the returned chunks (contiguous steps, the bundle's SHA-256) and writes an h5 dataset
  of the mapped trajectory (``openmm_cgml`` dataset format: positions, box, step, time, energies; no forces and no
  velocities, which are not recorded) continuing the run's mapped dataset: its first frames are the CPU
  production's, then the GPU's.  The metadata records both segments.

Usage::

    python benchmarks/extend_melt_gpu.py prepare [--workdir runs/melt_start] [--bundle .gpu]
    python benchmarks/extend_melt_gpu.py run --bundle .gpu --out OUT [--budget-s 420]     # on the GPU machine
    python benchmarks/extend_melt_gpu.py prepare --after OUT --bundle .gpu2   # a further segment after OUT
    python benchmarks/extend_melt_gpu.py ingest OUT1 [OUT2 ...] [--workdir runs/melt_start]

``study_melt_start.py --extension runs/melt_start/cg_c32_extended.h5`` then analyses the extended run.

On a GPU machine without OpenMM (an image with PyTorch and CUDA 13's libraries, no network), OpenMM ran from its
wheels, carried there: ``pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
manylinux_2_34_x86_64 -d .whl openmm==8.6.1 openmm-cuda-13==8.6.1`` here, then there ``pip install --no-index
--no-deps --target /tmp/site .whl/*.whl`` and ``ln -s <site-packages>/nvidia /tmp/site/nvidia`` (the CUDA plugin
finds ``libcufft.so.12`` and ``libnvrtc.so.13`` through its RUNPATH, ``$ORIGIN/../../../nvidia/cu13/lib``), with
``PYTHONPATH=/tmp/site``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

NAME = "aa_c32_unperturbed"
FILES = ("system.xml", "integrator.xml", "state.xml", "position_map.npz")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _atomic_bytes(path: Path, data: bytes) -> None:
    """Device side, where the package is not installed (here, ``openmm_cgml._io`` writes atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare(workdir: Path, bundle: Path, after: Path | None = None) -> dict:
    """The bundle of the run in ``workdir``: from its checkpoint, or, with ``after`` (a ``run`` output folder), from
    that segment's last state, to continue it."""
    import openmm
    import scipy.sparse
    import yaml
    from openmm import XmlSerializer

    from openmm_cgml._checkpoint import read_checkpoint
    from openmm_cgml._io import atomic_path, atomic_write_text
    from openmm_cgml._safety import load_openmm_xml
    from openmm_cgml.dataset import open_h5
    from openmm_cgml.mapping import CGMapping
    from openmm_cgml.reference.run import ReferenceConfig
    from openmm_cgml.thermostat import make_integrator

    config = ReferenceConfig(**yaml.safe_load((workdir / "c32_unperturbed.yaml").read_text()))
    header, payload = read_checkpoint(workdir / f"{NAME}.h5.chk")
    if header["stage"] != "done" or header["payload"] != "checkpoint":
        raise SystemExit(f"the run in {workdir} has not finished (stage {header['stage']}); finish it first")
    system = load_openmm_xml(workdir / f"{NAME}.system.xml", "System")  # refuses Python callbacks
    integrator = make_integrator(config.thermostat, config.temperature, config.timestep, config.seed + 1,
                                 system=system)
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, integrator, platform)
    context.loadCheckpoint(payload)
    state = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getParameters=True,
                             getIntegratorParameters=True)
    pos = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
    mapping = CGMapping.from_json((workdir / "mapping_c32.json").read_text())
    matrix = scipy.sparse.csr_matrix(mapping.position_matrix)
    with open_h5(workdir / f"{NAME}.h5") as f:
        last_aa = np.asarray(f["positions"][-1], dtype=float)
        last_step = int(f["step"][-1])
    with open_h5(workdir / "cg_c32_unperturbed.h5") as f:
        last_cg = np.asarray(f["positions"][-1], dtype=float)
    if state.getStepCount() != last_step:
        raise SystemExit(f"checkpoint step {state.getStepCount()} != the dataset's last step {last_step}")
    map_error = float(np.abs(matrix @ last_aa - last_cg).max())
    state_error = float(np.abs(pos - last_aa).max())
    if map_error > 1e-4 or state_error > 1e-4:
        raise SystemExit(f"the bundle does not reproduce the run's last frame (map {map_error:.2e} nm, state "
                         f"{state_error:.2e} nm)")
    continues = None
    if after is not None:  # the segment's last state, checked against its last recorded frame
        record = json.loads((after / "run.json").read_text())
        state = load_openmm_xml(after / "state_last.xml", "State")
        last = record["chunks"][-1]
        if state.getStepCount() != last["last_step"] or record["state_last"]["step"] != last["last_step"]:
            raise SystemExit(f"{after}: its last state (step {state.getStepCount()}) is not at its last frame "
                             f"(step {last['last_step']})")
        with np.load(after / last["file"], allow_pickle=False) as z:
            frame = z["positions"][-1]
        pos = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        if float(np.abs(matrix @ pos - frame).max()) > 1e-4:
            raise SystemExit(f"{after}: its last state does not map onto its last frame")
        context.setState(state)
        state = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getParameters=True,
                                 getIntegratorParameters=True)
        continues = {"segment": str(after), "sha256": record["bundle"]["sha256"]}
    bundle.mkdir(parents=True, exist_ok=True)
    for name, obj in (("system.xml", system), ("integrator.xml", integrator), ("state.xml", state)):
        atomic_write_text(bundle / name, XmlSerializer.serialize(obj))
    with atomic_path(bundle / "position_map.npz") as tmp, open(tmp, "wb") as fh:
        scipy.sparse.save_npz(fh, matrix, compressed=False)
    info = {"source": str(workdir / f"{NAME}.h5"), "step": int(state.getStepCount()),
            "time_ps": float(state.getTime().value_in_unit(openmm.unit.picosecond)),
            "timestep_ps": float(config.timestep), "temperature_K": float(config.temperature),
            "thermostat": config.thermostat.model_dump(mode="json"),
            "potential_energy_kj_mol": float(state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)),
            "n_atoms": int(system.getNumParticles()), "n_beads": int(matrix.shape[0]),
            "map_check_nm": map_error, "state_check_nm": state_error, "continues": continues,
            "sha256": {name: _sha256(bundle / name) for name in FILES}}
    atomic_write_text(bundle / "bundle.json", json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "sha256"}, indent=1))
    return info


def run(bundle: Path, out: Path, budget_s: float, max_ns: float, report_steps: int, chunk_frames: int,
        platform_name: str) -> int:
    """Device side: OpenMM, NumPy and SciPy only."""
    import openmm
    import scipy.sparse
    from openmm import XmlSerializer, unit

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    info = json.loads((bundle / "bundle.json").read_text())
    for name in FILES:
        if _sha256(bundle / name) != info["sha256"][name]:
            raise SystemExit(f"{bundle / name} is not the prepared file (SHA-256 differs)")
    print("OpenMM", openmm.__version__, "platforms:",
          [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())], flush=True)
    failures = openmm.Platform.getPluginLoadFailures()
    if failures:
        print("plugin load failures:", *failures, sep="\n  ", flush=True)
    system = XmlSerializer.deserialize((bundle / "system.xml").read_text())
    integrator = XmlSerializer.deserialize((bundle / "integrator.xml").read_text())
    state = XmlSerializer.deserialize((bundle / "state.xml").read_text())
    matrix = scipy.sparse.load_npz(bundle / "position_map.npz").tocsr()
    platform = openmm.Platform.getPlatformByName(platform_name)
    properties = {"Precision": "mixed"} if platform_name in ("CUDA", "OpenCL", "HIP") else {}
    context = openmm.Context(system, integrator, platform, properties)
    context.setState(state)
    e0 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    de = e0 - info["potential_energy_kj_mol"]
    print(f"platform {platform.getName()}; potential energy {e0:.2f} kJ/mol (CPU {info['potential_energy_kj_mol']:.2f},"
          f" difference {de:.3g})", flush=True)
    if abs(de) > 1e-3 * abs(info["potential_energy_kj_mol"]) + 50:
        raise SystemExit("the device's energy of the state disagrees with the CPU's: not the same system")
    props = {n: platform.getPropertyValue(context, n) for n in platform.getPropertyNames()}
    box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer), dtype=float)
    dt = info["timestep_ps"]
    max_steps = int(round(max_ns * 1000.0 / dt / report_steps)) * report_steps
    record = {"bundle": info, "platform": platform.getName(), "properties": props, "report_steps": report_steps,
              "chunk_frames": chunk_frames, "start_step": info["step"], "box_nm": box.tolist(),
              "chunks": [], "setup_s": time.perf_counter() - t_start}

    def write_record():
        tmp = out / "run.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, out / "run.json")

    def save_state(tag: str):
        st = context.getState(getPositions=True, getVelocities=True, getParameters=True,
                              getIntegratorParameters=True)
        _atomic_bytes(out / "state_last.xml", XmlSerializer.serialize(st).encode())
        record["state_last"] = {"step": int(st.getStepCount()), "tag": tag}

    frames, steps, times, pot, kin = [], [], [], [], []
    n_chunk = 0
    done = 0
    md_t0 = time.perf_counter()
    while done < max_steps and time.perf_counter() - md_t0 < budget_s:
        integrator.step(report_steps)
        done += report_steps
        st = context.getState(getPositions=True, getEnergy=True)
        x = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        frames.append(np.asarray(matrix @ x, dtype=np.float32))
        steps.append(st.getStepCount())
        times.append(st.getTime().value_in_unit(unit.picosecond))
        pot.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        kin.append(st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))
        if len(frames) == chunk_frames or done >= max_steps or time.perf_counter() - md_t0 >= budget_s:
            name = f"chunk_{n_chunk:02d}.npz"
            with open(out / (name + ".tmp"), "wb") as fh:
                np.savez(fh, positions=np.stack(frames), step=np.asarray(steps, dtype=np.int64),
                         time=np.asarray(times), potential_energy=np.asarray(pot), kinetic_energy=np.asarray(kin))
            os.replace(out / (name + ".tmp"), out / name)
            elapsed = time.perf_counter() - md_t0
            record["chunks"].append({"file": name, "frames": len(frames), "first_step": int(steps[0]),
                                     "last_step": int(steps[-1])})
            record["md_s"] = elapsed
            record["steps"] = done
            record["ns_per_day"] = done * dt * 1e-3 / elapsed * 86400
            save_state(name)
            write_record()
            print(f"{name}: {len(frames)} frames to step {steps[-1]} ({done * dt / 1000:.2f} ns in {elapsed:.0f} s, "
                  f"{record['ns_per_day']:.0f} ns/day)", flush=True)
            frames, steps, times, pot, kin = [], [], [], [], []
            n_chunk += 1
    return 0


def ingest(segments: list[Path], workdir: Path, output: Path) -> dict:
    """The mapped dataset continued by the GPU segments (each a ``run`` output folder, in order), at the GPU's frame
    spacing (the CPU production's frames thinned to it), positions only."""
    from openmm_cgml.dataset import Dataset, open_dataset, write_dataset

    cpu = open_dataset(workdir / "cg_c32_unperturbed.h5")
    records = [json.loads((seg / "run.json").read_text()) for seg in segments]
    report = {r["report_steps"] for r in records}
    if len(report) != 1:
        raise SystemExit(f"the segments record at different intervals {sorted(report)}")
    report = report.pop()
    cpu_every = report // int(cpu.step[1] - cpu.step[0])
    if cpu_every < 1 or report % int(cpu.step[1] - cpu.step[0]):
        raise SystemExit("the GPU's report interval is not a whole multiple of the CPU production's")
    step_expected = int(cpu.step[-1])
    parts = []
    for seg, rec in zip(segments, records):
        if rec["start_step"] != step_expected:
            raise SystemExit(f"{seg} starts at step {rec['start_step']}, expected {step_expected} (the segments must "
                             "continue each other)")
        for c in rec["chunks"]:
            with np.load(seg / c["file"], allow_pickle=False) as z:
                parts.append({k: z[k] for k in z.files})
        step_expected = rec["chunks"][-1]["last_step"]
    step = np.concatenate([p["step"] for p in parts])
    if not np.array_equal(step, int(cpu.step[-1]) + report * np.arange(1, len(step) + 1)):
        raise SystemExit("the returned chunks are not one contiguous run")
    box = np.asarray(records[0]["box_nm"])
    if not np.allclose(box, cpu.box[-1], atol=1e-6):
        raise SystemExit("the GPU segments' box differs from the CPU production's")
    keep = np.arange(0, cpu.n_frames, cpu_every)
    n_gpu = len(step)
    meta = dict(cpu.metadata)
    meta["gpu_extension"] = {
        "segments": [{"platform": r["platform"], "device": r["properties"].get("DeviceName"),
                      "precision": r["properties"].get("Precision"), "ns_per_day": r["ns_per_day"],
                      "first_step": r["chunks"][0]["first_step"], "last_step": r["chunks"][-1]["last_step"]}
                     for r in records],
        "note": "production continued on a GPU from the CPU run's last state (same System, integrator and state); "
                "the CPU frames thinned to the GPU's interval; positions only",
        "cpu_frames": int(len(keep)), "gpu_frames": int(n_gpu), "frame_interval_steps": int(report)}
    data = Dataset(path=output, kind=cpu.kind, metadata=meta, topology_data=cpu.topology_data, masses=cpu.masses,
                   positions=np.concatenate([cpu.positions[keep], np.concatenate([p["positions"] for p in parts])]),
                   box=np.concatenate([cpu.box[keep], np.broadcast_to(box, (n_gpu, 3, 3))]),
                   step=np.concatenate([cpu.step[keep], step]),
                   time=np.concatenate([cpu.time[keep], np.concatenate([p["time"] for p in parts])]),
                   potential_energy=np.concatenate([cpu.potential_energy[keep],
                                                    np.concatenate([p["potential_energy"] for p in parts])]),
                   kinetic_energy=np.concatenate([cpu.kinetic_energy[keep],
                                                  np.concatenate([p["kinetic_energy"] for p in parts])]))
    write_dataset(output, data)
    summary = {"output": str(output), "frames": data.n_frames, "production_ps": float(data.time[-1] - data.time[0]),
               **meta["gpu_extension"]}
    print(json.dumps(summary, indent=1))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--workdir", type=Path, default=Path("runs/melt_start"))
    p.add_argument("--bundle", type=Path, default=Path(".gpu"))
    p.add_argument("--after", type=Path, default=None, help="a run output folder: continue from its last state")
    r = sub.add_parser("run")
    r.add_argument("--bundle", type=Path, default=Path(".gpu"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget-s", type=float, default=420.0)
    r.add_argument("--max-ns", type=float, default=15.0)
    r.add_argument("--report-steps", type=int, default=500)
    r.add_argument("--chunk-frames", type=int, default=1800)
    r.add_argument("--platform", default="CUDA")
    i = sub.add_parser("ingest")
    i.add_argument("segments", type=Path, nargs="+", help="the run output folders, in order")
    i.add_argument("--workdir", type=Path, default=Path("runs/melt_start"))
    i.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.workdir, args.bundle, args.after)
        return 0
    if args.cmd == "run":
        return run(args.bundle, args.out, args.budget_s, args.max_ns, args.report_steps, args.chunk_frames,
                   args.platform)
    ingest(args.segments, args.workdir, args.output or args.workdir / "cg_c32_extended.h5")
    return 0


if __name__ == "__main__":
    sys.exit(main())

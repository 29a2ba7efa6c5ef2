"""Tabulated CG pair layouts against system size, with LAMMPS on the same exported tables beside them.

The model: a 3-bead molecule (A-B-A: tabulated Lennard-Jones-like pair tables for A-A, A-B, B-B with a 1.2 nm
cutoff, harmonic bond and angle) at the demo liquid's bead density, in cubic boxes of 192 to ``--max-beads``
beads.  At each size the arms are timed round-robin in this process (several rounds, medians, spread, machine
load recorded), on one CPU thread each:

- ``groups``: one ``CustomNonbondedForce`` per type pair restricted by interaction groups;
- ``slot``: one force with every table in one ``Continuous1DFunction`` and a per-type-pair offset;
- ``lammps``: the same model exported by :func:`openmm_cgml.export.export_lammps` and run by Debian's ``lmp``
  (``pair_style table linear``), timed from its own loop time so start-up is not counted.

It writes microseconds per bead-step of each arm and the crossover where ``groups`` stops paying, which
``layout="auto"`` uses (``openmm_cgml.forces.tabulated.GROUP_LAYOUT_MAX_BEADS``).

Usage: python benchmarks/bench_pair_layout.py [--max-beads 12288] [--rounds 5] [--no-lammps]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, load_average, write_result  # noqa: E402

DENSITY = 192 / 2.6**3  # beads per nm^3: the demo's 64 x 3 beads in its 2.6 nm box
CUTOFF = 1.2


def model(n_mol: int):
    from openmm_cgml.forces.bonded import HarmonicAngles, HarmonicBonds
    from openmm_cgml.forces.tabulated import TabulatedPairPotential
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.topology import CGTopology

    box = (3 * n_mol / DENSITY) ** (1 / 3)
    types = ["A", "B", "A"] * n_mol
    topology = CGTopology(bead_types=tuple(types), molecule_index=np.repeat(np.arange(n_mol), 3),
                          bonds=np.array([[3 * m + i, 3 * m + i + 1] for m in range(n_mol) for i in range(2)]),
                          masses=np.where(np.array(types) == "A", 43.0, 28.0), box_vectors=np.eye(3) * box)
    r = np.linspace(0.05, CUTOFF, 231)

    def lj(s, e):
        u = 4 * e * ((s / r) ** 12 - (s / r) ** 6)
        return np.minimum(u - u[-1], 400.0)

    tables = {"A-A": (r, lj(0.45, 1.6)), "A-B": (r, lj(0.43, 1.4)), "B-B": (r, lj(0.41, 1.2))}
    bonded = [HarmonicBonds({"A-B": {"r0": 0.26, "k": 8000.0}}), HarmonicAngles({"A-B-A": {"theta0": 2.0, "k": 60.0}})]
    g = int(np.ceil(n_mol ** (1 / 3)))
    pos = []
    for k in range(n_mol):
        c = (np.array([k % g, (k // g) % g, k // g**2]) + 0.5) * box / g
        pos += [c + [-0.24, 0.05, 0], c, c + [0.12, 0.2, 0.05]]
    potentials = {layout: CGPotential([TabulatedPairPotential(tables, cutoff=CUTOFF, layout=layout), *bonded])
                  for layout in ("groups", "slot")}
    return topology, np.array(pos), potentials


def openmm_arm(potential, topology, positions, steps: int):
    import openmm

    system = potential.createSystem(topology)
    integrator = openmm.LangevinMiddleIntegrator(300, 1, 0.005)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10, 200)
    context.setVelocitiesToTemperature(300, 1)
    integrator.step(200)
    return context, lambda: (integrator.step(steps), context.getState(getEnergy=True))


def lammps_arm(potential, topology, positions, steps: int, workdir: Path):
    from openmm_cgml.export import export_lammps

    lmp = shutil.which("lmp")
    out = export_lammps(potential, topology, positions, workdir, steps=steps, timestep_fs=5, temperature=300,
                        dump_every=10**9)
    script = (out.directory / "in.cg").read_text().replace(f"run {steps}", "minimize 1e-4 1e-6 200 2000\n"
                                                                         f"run {steps}")
    (out.directory / "in.bench").write_text(script)
    loop_times = []

    def run():
        proc = subprocess.run([lmp, "-in", "in.bench", "-log", "bench.log", "-screen", "none"], cwd=out.directory,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode:
            raise RuntimeError(f"LAMMPS failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        times = re.findall(r"Loop time of ([\d.eE+-]+) on", (out.directory / "bench.log").read_text())
        loop_times.append(float(times[-1]))  # the MD run's loop, not the minimisation's
    return run, loop_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-beads", type=int, default=12288)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-lammps", action="store_true")
    args = parser.parse_args()
    sizes = [n for n in (192, 768, 1536, 3072, 12288, 49152, 98304) if n <= args.max_beads]
    use_lammps = not args.no_lammps and shutil.which("lmp") is not None
    if not args.no_lammps and not use_lammps:
        print("no lmp on PATH (Debian: apt-get install lammps): the LAMMPS arm is skipped")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_beads in sizes:
            topology, positions, potentials = model(n_beads // 3)
            steps = max(20, int(200 * 192 / n_beads) * 5)  # about the same work per block at every size
            calls, keep = {}, []
            for layout, potential in potentials.items():
                context, fn = openmm_arm(potential, topology, positions, steps)
                keep.append(context)
                calls[layout] = (fn, steps * n_beads)
            loop_times = None
            if use_lammps:
                fn, loop_times = lammps_arm(potentials["slot"], topology, positions, steps, Path(tmp) / f"lmp{n_beads}")
                calls["lammps_wall"] = (fn, steps * n_beads)
            load_before = load_average()
            timed = interleaved(calls, args.rounds, spread=True)
            row = {"beads": n_beads, "steps_per_block": steps, "load_average": [load_before, load_average()]}
            for name, t in timed.items():
                if name == "lammps_wall":
                    loops = [x / (steps * n_beads) for x in loop_times[1:]]  # the first was the warm-up
                    row["lammps_us_per_bead_step"] = 1e6 * float(np.median(loops))
                    row["lammps_us_spread"] = [1e6 * min(loops), 1e6 * max(loops)]
                    row["lammps_wall_us_per_bead_step"] = 1e6 * t["median"]
                else:
                    row[f"{name}_us_per_bead_step"] = 1e6 * t["median"]
                    row[f"{name}_us_spread"] = [1e6 * t["min"], 1e6 * t["max"]]
            row["groups_over_slot"] = row["groups_us_per_bead_step"] / row["slot_us_per_bead_step"]
            if "lammps_us_per_bead_step" in row:
                row["slot_over_lammps"] = row["slot_us_per_bead_step"] / row["lammps_us_per_bead_step"]
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            rows.append(row)
            del keep
    faster = [r["beads"] for r in rows if r["groups_over_slot"] < 1.0]
    figures = {"sizes": rows, "groups_faster_up_to_beads": max(faster) if faster else 0,
               "slot_flatness": max(r["slot_us_per_bead_step"] for r in rows)
               / min(r["slot_us_per_bead_step"] for r in rows)}
    write_result("bench_pair_layout", figures, {"rounds": args.rounds, "threads": 1, "platform": "CPU",
                                                 "cutoff_nm": CUTOFF, "density_beads_per_nm3": DENSITY,
                                                 "lammps": use_lammps})
    return 0


if __name__ == "__main__":
    sys.exit(main())

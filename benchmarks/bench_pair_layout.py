"""Tabulated CG pair layouts against system size, with LAMMPS on the same exported tables beside them.

The model: a 3-bead molecule (A-B-A: tabulated Lennard-Jones-like pair tables for A-A, A-B, B-B with a 1.2 nm
cutoff, harmonic bond and angle) at the demo liquid's bead density, in cubic boxes of 192 to ``--max-beads``
beads.  At each size the arms are timed round-robin in this process (several rounds, medians, spread, machine
load recorded), on one CPU thread each:

- ``groups``: one ``CustomNonbondedForce`` per type pair restricted by interaction groups (up to
  ``--max-group-beads``: its cost grows as N);
- ``slot``: one force with every table in one ``Continuous1DFunction`` and a per-type-pair offset;
- ``compiled``: the package's C++ force (``openmm_cgml.forces.compiled``: the same splines, its own Verlet list);
- ``lammps``: the same model exported by :func:`openmm_cgml.export.export_lammps` and run by Debian's ``lmp``
  (``pair_style table linear``), timed from its own loop time so start-up is not counted.  When ``lmp`` is
  missing and this runs as root on Debian, the benchmark installs it (``apt-get install lammps``).

It writes microseconds per bead-step of each arm, the memory each arm's Context took (resident set growth;
LAMMPS: its own per-rank estimate), the crossover where ``groups`` stops paying, and the goals: the compiled
force's cost flat within 1.5x over the sizes and within 1.5x of LAMMPS per core at 192 and about 10^4 beads.

Usage: python benchmarks/bench_pair_layout.py [--max-beads 98304] [--rounds 5] [--no-lammps]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, load_average, write_result  # noqa: E402

LAYOUTS = ("groups", "slot", "compiled")
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
                  for layout in LAYOUTS}
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


def rss_mb() -> float:
    """This process's resident set, MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ensure_lammps() -> str | None:
    """``lmp``'s path; installs Debian's lammps first when it is missing and this is root on Debian."""
    if shutil.which("lmp") is None and shutil.which("apt-get") and os.geteuid() == 0:
        print("installing Debian's lammps for the LAMMPS arm (apt-get install lammps)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "lammps"], env=env, capture_output=True)
    return shutil.which("lmp")


def lammps_arm(potential, topology, positions, steps: int, workdir: Path):
    from openmm_cgml.export import export_lammps

    lmp = shutil.which("lmp")
    out = export_lammps(potential, topology, positions, workdir, steps=steps, timestep_fs=5, temperature=300,
                        dump_every=10**9)
    script = (out.directory / "in.cg").read_text().replace(f"run {steps}", "minimize 1e-4 1e-6 200 2000\n"
                                                                         f"run {steps}")
    (out.directory / "in.bench").write_text(script)
    loop_times: list[float] = []
    memory_mb: list[float] = []

    def run():
        proc = subprocess.run([lmp, "-in", "in.bench", "-log", "bench.log", "-screen", "none"], cwd=out.directory,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode:
            raise RuntimeError(f"LAMMPS failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        log = (out.directory / "bench.log").read_text()
        times = re.findall(r"Loop time of ([\d.eE+-]+) on", log)
        loop_times.append(float(times[-1]))  # the MD run's loop, not the minimisation's
        memory = re.findall(r"Per MPI rank memory allocation \(min/avg/max\) = [\d.]+ \| ([\d.]+) \|", log)
        if memory:
            memory_mb[:] = [float(memory[-1])]
    return run, loop_times, memory_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-beads", type=int, default=98304)
    parser.add_argument("--max-group-beads", type=int, default=12288, help="largest size the groups arm runs at")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-lammps", action="store_true")
    args = parser.parse_args()
    from openmm_cgml.forces import compiled

    if not compiled.available():
        print(f"the compiled arm is skipped: {compiled.unavailable_reason()}")
    sizes = [n for n in (192, 768, 3072, 12288, 49152, 98304) if n <= args.max_beads]
    use_lammps = not args.no_lammps and ensure_lammps() is not None
    if not args.no_lammps and not use_lammps:
        print("no lmp on PATH (Debian: apt-get install lammps): the LAMMPS arm is skipped")
    rows = []
    topology, positions, potentials = model(64)  # warm-up: the platforms' one-off start-up is not a Context's memory
    warm = [openmm_arm(p, topology, positions, 10) for k, p in potentials.items()
            if k != "compiled" or compiled.available()]
    del warm
    with tempfile.TemporaryDirectory() as tmp:
        for n_beads in sizes:
            topology, positions, potentials = model(n_beads // 3)
            steps = max(20, int(200 * 192 / n_beads) * 5)  # about the same work per block at every size
            calls, keep, memory = {}, [], {}
            for layout, potential in potentials.items():
                if (layout == "groups" and n_beads > args.max_group_beads) or \
                        (layout == "compiled" and not compiled.available()):
                    continue
                before = rss_mb()
                context, fn = openmm_arm(potential, topology, positions, steps)
                memory[layout] = rss_mb() - before
                keep.append(context)
                calls[layout] = (fn, steps * n_beads)
            loop_times = lammps_memory = None
            if use_lammps:
                fn, loop_times, lammps_memory = lammps_arm(potentials["slot"], topology, positions, steps,
                                                           Path(tmp) / f"lmp{n_beads}")
                calls["lammps_wall"] = (fn, steps * n_beads)
            load_before = load_average()
            timed = interleaved(calls, args.rounds, spread=True)
            row = {"beads": n_beads, "steps_per_block": steps, "load_average": [load_before, load_average()],
                   "context_memory_mb": {k: round(v, 1) for k, v in memory.items()}}
            for name, t in timed.items():
                if name == "lammps_wall":
                    loops = [x / (steps * n_beads) for x in loop_times[1:]]  # the first was the warm-up
                    row["lammps_us_per_bead_step"] = 1e6 * float(np.median(loops))
                    row["lammps_us_spread"] = [1e6 * min(loops), 1e6 * max(loops)]
                    row["lammps_wall_us_per_bead_step"] = 1e6 * t["median"]
                    if lammps_memory:
                        row["context_memory_mb"]["lammps"] = lammps_memory[0]
                else:
                    row[f"{name}_us_per_bead_step"] = 1e6 * t["median"]
                    row[f"{name}_us_spread"] = [1e6 * t["min"], 1e6 * t["max"]]
            if "groups_us_per_bead_step" in row:
                row["groups_over_slot"] = row["groups_us_per_bead_step"] / row["slot_us_per_bead_step"]
            if "compiled_us_per_bead_step" in row:
                row["slot_over_compiled"] = row["slot_us_per_bead_step"] / row["compiled_us_per_bead_step"]
            if "lammps_us_per_bead_step" in row:
                for layout in LAYOUTS:
                    if f"{layout}_us_per_bead_step" in row:
                        row[f"{layout}_over_lammps"] = row[f"{layout}_us_per_bead_step"] / row["lammps_us_per_bead_step"]
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            rows.append(row)
            del keep
    faster = [r["beads"] for r in rows if r.get("groups_over_slot", 2.0) < 1.0]
    figures = {"sizes": rows, "groups_faster_up_to_beads": max(faster) if faster else 0}
    for layout in ("slot", "compiled"):
        costs = [r[f"{layout}_us_per_bead_step"] for r in rows if f"{layout}_us_per_bead_step" in r]
        if costs:
            figures[f"{layout}_flatness"] = max(costs) / min(costs)
    goals = {}
    if "compiled_flatness" in figures:
        goals["compiled_flat_within_1.5x"] = {"value": figures["compiled_flatness"],
                                              "met": figures["compiled_flatness"] <= 1.5,
                                              "sizes": [rows[0]["beads"], rows[-1]["beads"]]}
    for r in rows:
        if r["beads"] in (192, 12288) and "compiled_over_lammps" in r:
            goals[f"compiled_within_1.5x_of_lammps_at_{r['beads']}"] = {"value": r["compiled_over_lammps"],
                                                                       "met": r["compiled_over_lammps"] <= 1.5}
    figures["goals"] = goals
    write_result("bench_pair_layout", figures, {"rounds": args.rounds, "threads": 1, "platform": "CPU",
                                                 "cutoff_nm": CUTOFF, "density_beads_per_nm3": DENSITY,
                                                 "lammps": use_lammps, "max_group_beads": args.max_group_beads,
                                                 "neighbor_skin_nm": compiled.DEFAULT_SKIN})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What Bussi's thermostat costs, rescaling every step or every ``--interval`` steps, against Langevin and plain NVE.

Transport (D, alpha) is measured under a global thermostat (:data:`openmm_cgml.thermostat.TRANSPORT_DEFAULT`,
Bussi's stochastic velocity rescaling), which openmm_cgml builds as an OpenMM ``CustomIntegrator``
(:func:`openmm_cgml.thermostat.bussi_integrator`).  Every rescaling sums the kinetic energy and N_f squared
Gaussians, and the host waits for each sum; OpenMM's ``LangevinMiddleIntegrator`` is one kernel.  On a GPU the AA
productions ran at a third of the Langevin equilibration's speed (docs/results.md, "The ionic liquid's AA references
on a GPU").  ``Thermostat(kind="bussi", interval=n)`` rescales every n-th step only (c = exp(-n dt / tau), canonical
for any n: ``tests/test_thermostat.py``).

Two systems, each with four integrators timed round-robin in one process (``--rounds`` rounds, medians, spread, load):

- ``aa``: a TIP3P water box (OpenMM's own amber14 files, no OpenFF), about ``--aa-atoms`` atoms, PME, rigid water,
  2 fs: an AA reference's shape (3,000 atoms as the ionic liquid's);
- ``cg``: a Lennard-Jones bead fluid of ``--cg-beads`` beads (mass 72, sigma 0.47 nm, 1.2 nm cutoff), 10 fs: a CG
  run's shape, where the force is cheap and the integrator's share is largest;

arms ``langevin`` (1 /ps), ``bussi`` (every step), ``bussi_every_N`` (every ``--interval`` steps) and ``nve``
(``VerletIntegrator``: the floor), each from the same state (minimised, then 5 ps (AA) or 50 ps (CG) of Langevin at
5 /ps).  Figures: ms per step of each, the ratios to Langevin, and the speed-up of the
interval over rescaling every step; the mean kinetic temperature of each arm over its timed blocks (all should hold
the set 300 K; NVE drifts from its start).  ``--platform CUDA`` measures a GPU (results name suffixed ``_cuda``).
``--aa-system X.system.xml --aa-pdb X.pdb`` times a prepared AA reference's own System instead of the water box (the
ionic liquid's: ``runs/temperature_bmim_pf6_gpu/T400/aa.system.xml`` and ``aa.pdb`` after ``--prepare-references``;
``--name-suffix`` names the results file apart).

Usage::

    python benchmarks/bench_thermostat_interval.py                       # CPU, 2 threads (a few minutes)
    python benchmarks/bench_thermostat_interval.py --platform CUDA       # on a GPU machine
    python benchmarks/bench_thermostat_interval.py --platform CUDA --aa-system runs/temperature_bmim_pf6_gpu/T400/aa.system.xml \
        --aa-pdb runs/temperature_bmim_pf6_gpu/T400/aa.pdb --name-suffix il
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, write_result  # noqa: E402


def water_box(n_atoms: int):
    """(System, positions, box vectors) of a TIP3P water box of about ``n_atoms`` atoms (PME, 0.9 nm, rigid)."""
    import openmm
    from openmm import app, unit

    side = (n_atoms / 3 / 33.4) ** (1 / 3)  # 33.4 waters per nm^3
    forcefield = app.ForceField("amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, boxSize=openmm.Vec3(side, side, side) * unit.nanometer)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                     nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds, rigidWater=True)
    pos = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    return system, pos, modeller.topology.getPeriodicBoxVectors()


def prepared_system(xml: Path, pdb: Path):
    """(System, positions, box vectors) of a prepared AA reference (its ``.system.xml`` and ``.pdb``)."""
    from openmm import app, unit

    from openmm_cgml.forces.xml import load_system

    structure = app.PDBFile(str(pdb))
    system = load_system(xml)
    box = structure.topology.getPeriodicBoxVectors() or system.getDefaultPeriodicBoxVectors()
    return system, np.asarray(structure.positions.value_in_unit(unit.nanometer)), box


def bead_fluid(n_beads: int):
    """(System, positions, box vectors) of a Lennard-Jones bead fluid (mass 72, sigma 0.47 nm, epsilon 3.5 kJ/mol,
    1.2 nm cutoff) at 7 beads/nm^3 on a jittered lattice."""
    from openmm_cgml.testing import lj_fluid

    fluid = lj_fluid(n_beads, (n_beads / 7.0) ** (1 / 3), sigma=0.47, epsilon=3.5, mass=72.0, cutoff=1.2,
                     jitter=0.01, seed=0)
    return fluid.system, fluid.positions, fluid.box


def arms(system, timestep: float, interval: int) -> dict:
    from openmm_cgml.thermostat import Thermostat, make_integrator

    kinds = {"langevin": Thermostat(kind="langevin", friction="1 /ps"),
             "bussi": Thermostat(kind="bussi", tau="1 ps"),
             f"bussi_every_{interval}": Thermostat(kind="bussi", tau="1 ps", interval=interval),
             "nve": Thermostat(kind="nve")}
    return {name: make_integrator(t, 300.0, timestep, seed=1, system=system) for name, t in kinds.items()}


def equilibrated(system, pos, box, timestep: float, steps: int, platform, props) -> object:
    """The State after minimising and ``steps`` Langevin steps at 5 /ps and 300 K (every arm starts from it, so the
    temperatures measured are the thermostats' and not a start's relaxation)."""
    import openmm
    from openmm import unit

    integrator = openmm.LangevinMiddleIntegrator(300.0 * unit.kelvin, 5.0 / unit.picosecond, timestep)
    integrator.setRandomNumberSeed(1)
    ctx = openmm.Context(system, integrator, platform, props)
    ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 500)
    ctx.setVelocitiesToTemperature(300.0, 1)
    integrator.step(steps)
    return ctx.getState(getPositions=True, getVelocities=True)


def measure(label: str, system, pos, box, timestep: float, steps: int, rounds: int, interval: int, platform: str,
            threads: int, equilibration_steps: int) -> dict:
    import openmm

    from openmm_cgml.thermostat import thermostat_degrees_of_freedom
    from openmm_cgml.units import KB

    props = {"Threads": str(threads)} if platform == "CPU" else {}
    platform = openmm.Platform.getPlatformByName(platform)
    n_dof = thermostat_degrees_of_freedom(system)
    start = equilibrated(system, pos, box, timestep, equilibration_steps, platform, props)
    contexts = {}
    for name, integrator in arms(system, timestep, interval).items():
        ctx = openmm.Context(system, integrator, platform, props)
        ctx.setState(start)
        contexts[name] = (ctx, integrator)
    temps: dict[str, list] = {k: [] for k in contexts}
    times: dict[str, list] = {k: [] for k in contexts}

    def block(name):
        ctx, integrator = contexts[name]
        t0 = time.perf_counter()
        integrator.step(steps)
        ke = ctx.getState(getEnergy=True).getKineticEnergy()._value  # also waits for the device
        return time.perf_counter() - t0, 2 * ke / (n_dof * KB)

    for name in contexts:  # warm-up and equilibration of each arm
        for _ in range(3):
            block(name)
    load_before = load_average()
    for _ in range(rounds):
        for name in contexts:
            dt, temperature = block(name)
            times[name].append(dt / steps * 1e3)
            temps[name].append(temperature)
    out = {"particles": system.getNumParticles(), "degrees_of_freedom": n_dof, "timestep_fs": timestep * 1e3,
           "steps_per_block": steps, "load_before": load_before, "load_after": load_average(), "arms": {}}
    for name in contexts:
        med = statistics.median(times[name])
        out["arms"][name] = {"ms_per_step": med, "spread_ms_per_step": [min(times[name]), max(times[name])],
                             "samples_ms_per_step": times[name], "mean_temperature_K": float(np.mean(temps[name]))}
    lang = out["arms"]["langevin"]["ms_per_step"]
    out["over_langevin"] = {name: a["ms_per_step"] / lang for name, a in out["arms"].items()}
    out["interval_speedup_over_every_step"] = (out["arms"]["bussi"]["ms_per_step"]
                                               / out["arms"][f"bussi_every_{interval}"]["ms_per_step"])
    print(f"{label}: " + ", ".join(f"{k} {v['ms_per_step']:.3f} ms/step" for k, v in out["arms"].items()), flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (CPU, CUDA, OpenCL)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OPENMM_CPU_THREADS", 2)))
    parser.add_argument("--interval", type=int, default=10, help="steps between rescalings of the spaced arm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--aa-atoms", type=int, default=3000)
    parser.add_argument("--cg-beads", type=int, default=400)
    parser.add_argument("--aa-steps", type=int, default=None, help="steps per timed block (default: 100 on the "
                        "CPU, 2000 on a GPU)")
    parser.add_argument("--cg-steps", type=int, default=None, help="steps per timed block (default: 1000 on the "
                        "CPU, 5000 on a GPU)")
    parser.add_argument("--aa-system", type=Path, help="a prepared AA reference's X.system.xml to time instead of "
                        "the water box (with --aa-pdb)")
    parser.add_argument("--aa-pdb", type=Path, help="its X.pdb (positions and box)")
    parser.add_argument("--name-suffix", default="", help="appended to the results name (_<suffix>)")
    parser.add_argument("--quick", action="store_true", help="small systems, 2 rounds (a smoke run)")
    args = parser.parse_args(argv)
    if args.interval < 2:
        parser.error(f"--interval must be at least 2 (1 is the bussi arm), got {args.interval}")
    if (args.aa_system is None) != (args.aa_pdb is None):
        parser.error("--aa-system and --aa-pdb go together")
    for path in (args.aa_system, args.aa_pdb):
        if path is not None and not path.is_file():
            parser.error(f"{path} does not exist")
    import openmm

    gpu = args.platform != "CPU"
    if args.quick:
        args.rounds, args.aa_atoms, args.cg_beads = 2, 600, 125
    aa_steps = args.aa_steps or (10 if args.quick else 2000 if gpu else 100)
    cg_steps = args.cg_steps or (50 if args.quick else 5000 if gpu else 1000)
    aa_label, aa = (("aa (TIP3P water, PME)", water_box(args.aa_atoms)) if args.aa_system is None else
                    (f"aa ({args.aa_system})", prepared_system(args.aa_system, args.aa_pdb)))
    figures = {
        "aa": measure(aa_label, *aa, 0.002, aa_steps, args.rounds, args.interval,
                      args.platform, args.threads, equilibration_steps=100 if args.quick else 2500),
        "cg": measure("cg (LJ beads)", *bead_fluid(args.cg_beads), 0.010, cg_steps, args.rounds, args.interval,
                      args.platform, args.threads, equilibration_steps=200 if args.quick else 5000)}
    settings = {"platform": args.platform, "threads": args.threads if not gpu else None, "interval": args.interval,
                "rounds": args.rounds, "tau_ps": 1.0, "friction_per_ps": 1.0, "temperature_K": 300.0,
                "quick": args.quick, "openmm": openmm.__version__,
                "aa_system": None if args.aa_system is None else str(args.aa_system)}
    name = ("bench_thermostat_interval" + ("" if not gpu else f"_{args.platform.lower()}")
            + (f"_{args.name_suffix}" if args.name_suffix else "") + ("_quick" if args.quick else ""))
    write_result(name, figures, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

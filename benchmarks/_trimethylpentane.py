"""Shared set-up of the 2,3,4-trimethylpentane benchmarks: one AA reference run, mapped to CG."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

SMILES = "CC(C)C(C)C(C)C"
N_MOL = 64
TEMPERATURE = 298.15


def aa_reference(workdir: Path, production_ps: float, *, report_ps: float = 0.2, npt_ps: float = 10.0,
                 reuse: bool = False):
    """Run (or, with ``reuse``, resume/reuse) the AA reference; returns (result, wall seconds, config)."""
    from openmm_cgml.reference import ReferenceConfig, run_reference

    config = ReferenceConfig.from_data({
        "components": [{"smiles": SMILES, "count": N_MOL, "name": "TMP"}],
        "density": "0.70 g/cm**3", "forcefield": "openff-2.2.0", "charge_method": "am1bcc",
        "cutoff": "0.9 nm", "temperature": f"{TEMPERATURE} K", "timestep": "2 fs", "nvt": "2 ps",
        "npt": f"{npt_ps} ps", "production": f"{production_ps} ps", "report_interval": f"{report_ps} ps",
        "checkpoint_interval": f"{production_ps} ps", "platform": "CPU", "seed": 1,
    })
    t0 = time.perf_counter()
    result = run_reference(config, workdir / "aa.h5", resume=reuse, overwrite=not reuse, progress=False)
    return result, time.perf_counter() - t0, config


def aa_block(result, n_steps: int):
    """A warmed-up AA Context (CPU platform) and a function that advances it ``n_steps`` (one timed block)."""
    import openmm

    from openmm_cgml.dataset import open_dataset

    system = openmm.XmlSerializer.deserialize(Path(result.system_xml).read_text())
    ds = open_dataset(result.dataset)
    integ = openmm.LangevinMiddleIntegrator(TEMPERATURE, 1.0, 0.002)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*ds.box[-1])
    ctx.setPositions(ds.positions[-1])
    ctx.setVelocitiesToTemperature(TEMPERATURE, 1)
    integ.step(20)
    return ctx, lambda: (integ.step(n_steps), ctx.getState(getEnergy=True))


def cg_block(system, positions, dt_ps: float, n_steps: int, platform: str = "CPU"):
    """A minimised, thermalised CG Context, a function that advances it ``n_steps`` (one timed block), and one that
    returns its kinetic temperature now (K)."""
    import openmm
    from openmm import unit

    from openmm_cgml.units import KB

    integ = openmm.LangevinMiddleIntegrator(TEMPERATURE, 1.0, dt_ps)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(TEMPERATURE, 1)
    integ.step(200)
    n_dof = 3 * system.getNumParticles() - 3

    def temperature() -> float:
        ke = ctx.getState(getEnergy=True).getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        return 2 * ke / (n_dof * KB)

    return ctx, lambda: (integ.step(n_steps), ctx.getState(getEnergy=True)), temperature


def map_reference(result, workdir: Path, n_beads: int):
    """Map the AA dataset with an automatic ``n_beads`` mapping; returns (mapping, cg dataset path)."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.mapping import CGMapping, map_dataset

    ds = open_dataset(result.dataset)
    mapping = CGMapping.automatic(ds.topology, n_beads, masses=ds.masses)
    path = map_dataset(result.dataset, mapping, workdir / f"cg{n_beads}.h5", progress=False)
    return mapping, path


def steps_per_second(system, positions, dt_ps: float, n_steps: int, repeats: int = 3, platform: str = "CPU"):
    """Median-ready list of steps/s of a CG system, and whether the run stayed stable."""
    import openmm
    from openmm import unit

    rates, temps = [], []
    try:
        ctx, block, temperature = cg_block(system, positions, dt_ps, n_steps, platform)
    except openmm.OpenMMException:  # NaN in the first steps: unstable at this timestep
        return rates, False, temps
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            block()
        except openmm.OpenMMException:
            return rates, False, temps
        rates.append(n_steps / (time.perf_counter() - t0))
        temps.append(temperature())
        pos = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        if not np.all(np.isfinite(pos)):
            return rates, False, temps
    stable = all(abs(t / TEMPERATURE - 1) < 0.15 for t in temps)
    return rates, stable, temps

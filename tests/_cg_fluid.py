"""A tiny CG fluid with a known potential (LJ pairs + harmonic bonds), for force-matching tests and benchmarks."""

from __future__ import annotations

import numpy as np

SIGMA = {"A-A": 0.34, "A-B": 0.36, "B-B": 0.38}
EPSILON = 1.2  # kJ/mol
BOND_R0, BOND_K = 0.30, 4000.0  # nm, kJ/mol/nm^2
PAIR_CUTOFF = 0.9  # nm


def known_system(n_dimers: int = 32, box: float = 2.2, epsilon: float = EPSILON):
    """(openmm.System, bead_types, molecule_index, bonds, box_vectors) of A-B dimers (LJ well depth ``epsilon``)."""
    import openmm

    types = ["A", "B"] * n_dimers
    mol = np.repeat(np.arange(n_dimers), 2)
    bonds = np.array([[2 * m, 2 * m + 1] for m in range(n_dimers)])
    system = openmm.System()
    box_vectors = np.eye(3) * box
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in box_vectors))
    for _ in types:
        system.addParticle(40.0)
    sig = {"A": 0.34, "B": 0.38}
    pair = openmm.CustomNonbondedForce(
        "4*eps*((s/r)^12 - (s/r)^6) - shift; shift = 4*eps*((s/rc)^12 - (s/rc)^6); s = 0.5*(sg1 + sg2)")
    pair.addGlobalParameter("eps", epsilon)
    pair.addGlobalParameter("rc", PAIR_CUTOFF)
    pair.addPerParticleParameter("sg")
    for t in types:
        pair.addParticle([sig[t]])
    pair.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    pair.setCutoffDistance(PAIR_CUTOFF)
    bond = openmm.HarmonicBondForce()
    for a, b in bonds:
        bond.addBond(int(a), int(b), BOND_R0, BOND_K)
        pair.addExclusion(int(a), int(b))
    system.addForce(pair)
    system.addForce(bond)
    return system, types, mol, bonds, box_vectors


def simulate_known_fluid(path, n_frames: int = 120, interval: int = 50, seed: int = 1, n_dimers: int = 32,
                         box: float = 2.2, nan_frame: int | None = None, temperature: float = 300.0,
                         epsilon: float = EPSILON):
    """Simulate the known fluid (Langevin, ``temperature`` K, LJ well depth ``epsilon``) and write a coarse-grained
    dataset with exact forces (its metadata records the temperature as the package's runs do)."""
    import openmm
    from openmm import app, unit

    from openmm_cgml.dataset import TrajectoryWriter

    system, types, mol, bonds, box_vectors = known_system(n_dimers, box, epsilon)
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(n_dimers ** (1 / 3)))
    spacing = box / grid
    pos = []
    for k in range(n_dimers):
        c = (np.array([k % grid, (k // grid) % grid, k // grid**2]) + 0.5) * spacing
        d = rng.normal(size=3)
        d *= BOND_R0 / 2 / np.linalg.norm(d)
        pos += [c - d, c + d]
    pos = np.array(pos)
    top = app.Topology()
    chain = top.addChain()
    atoms = []
    for _ in range(n_dimers):
        res = top.addResidue("DIM", chain)
        atoms += [top.addAtom("A", None, res), top.addAtom("B", None, res)]
    for a, b in bonds:
        top.addBond(atoms[a], atoms[b])
    integ = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, 5 / unit.picosecond, 0.004 * unit.picosecond)
    integ.setRandomNumberSeed(seed)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    ctx.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    ctx.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
    integ.step(1000)
    masses = np.full(len(types), 40.0)
    meta = {"temperature": f"{temperature:g} K", "temperature_K": float(temperature), "bead_types": types}
    with TrajectoryWriter(path, top, masses, meta,
                          fields=("positions", "forces"), kind="coarse-grained", precision="double") as w:
        for i in range(n_frames):
            integ.step(interval)
            st = ctx.getState(getPositions=True, getForces=True, getEnergy=True)
            f = st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
            w.append(positions=st.getPositions(asNumpy=True).value_in_unit(unit.nanometer), forces=f,
                     box=box_vectors, step=(i + 1) * interval, time=(i + 1) * interval * 0.004,
                     potential_energy=st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    if nan_frame is not None:  # a damaged file: the writer refuses NaN, so poke it in afterwards
        import h5py

        with h5py.File(path, "r+") as h5:
            row = h5["forces"][nan_frame]
            row[0, 0] = np.nan
            h5["forces"][nan_frame] = row
    return path


def boltzmann_bond_prior(dataset, bonds, kT: float = 2.494):
    """Harmonic bond prior from the bond-length distribution: r0 = <r>, k = kT / var(r)."""
    pos = dataset.positions
    box = dataset.box[0].diagonal()
    d = pos[:, bonds[:, 1]] - pos[:, bonds[:, 0]]
    d -= box * np.round(d / box)
    r = np.linalg.norm(d, axis=-1).ravel()
    return {"A-B": {"r0": float(r.mean()), "k": float(kT / r.var())}}

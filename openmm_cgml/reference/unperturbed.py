"""Start conformations for a melt: each molecule its own conformation from the molecule's unperturbed ensemble.

Packmol places rigid copies of one conformer, so a melt packed that way starts with every chain the same shape
(one end-to-end distance), and it takes many end-to-end relaxation times of MD before the chains' dimensions are
those of the melt; for chains of a few tens of carbons that is most of what an AA reference costs.  By Flory's
theorem a chain in its melt has the dimensions of the *unperturbed* chain: the interactions between monomers far
apart along the chain are screened by the other chains, while the local ones (bond, angle and torsion terms and
the nonbonded pairs a few bonds apart, e.g. polyethylene's "pentane effect" between carbons four bonds apart)
set the chain's stiffness.  :func:`unperturbed_conformations` samples that ensemble directly: Langevin dynamics
in vacuum of independent copies of the molecule, each with its force field's bonded terms and with its nonbonded
pairs (Lennard-Jones and Coulomb, the force field's 1-4 scaling kept) only up to ``max_bonds`` bonds apart.
Copies start from distinct RDKit conformers.  Such a melt starts with its chain dimensions spread as in
equilibrium; the reference's equilibration then only has to pack the chains, not to relax them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: Nonbonded pairs up to this many bonds apart are kept (default): hydrogens on carbons four bonds apart (the
#: pentane effect, which forbids g+g- pairs of torsions) are six bonds apart.
DEFAULT_MAX_BONDS = 6

_COULOMB = 138.935456  # kJ mol^-1 nm e^-2, OpenMM's ONE_4PI_EPS0


def bond_separations(n_atoms: int, bonds: list[tuple[int, int]], max_bonds: int) -> dict[tuple[int, int], int]:
    """Pairs ``(i, j)``, ``i < j``, that are between 1 and ``max_bonds`` bonds apart, with their separation."""
    neighbours: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        neighbours[i].append(j)
        neighbours[j].append(i)
    pairs: dict[tuple[int, int], int] = {}
    for start in range(n_atoms):
        seen = {start: 0}
        frontier = [start]
        for depth in range(1, max_bonds + 1):
            nxt = []
            for a in frontier:
                for b in neighbours[a]:
                    if b not in seen:
                        seen[b] = depth
                        nxt.append(b)
            frontier = nxt
        pairs.update({(start, b): d for b, d in seen.items() if b > start})
    return pairs


def unperturbed_system(system, bonds: list[tuple[int, int]], copies: int, *, max_bonds: int = DEFAULT_MAX_BONDS):
    """``copies`` independent copies of a one-molecule vacuum ``system`` whose nonbonded pairs are cut to those
    at most ``max_bonds`` bonds apart.

    ``system`` must have a ``NonbondedForce`` (the other forces, bonded terms, are copied as they are; a
    ``CMMotionRemover`` is dropped).  Pairs the ``NonbondedForce`` has as exceptions keep the exception's
    parameters (1-2 and 1-3 pairs off, 1-4 pairs scaled); other pairs within ``max_bonds`` combine by
    Lorentz-Berthelot as the force does.
    """
    import openmm

    if max_bonds < 3:
        raise ConfigurationError(f"max_bonds must be at least 3 (1-4 pairs kept), got {max_bonds}")
    n = system.getNumParticles()
    nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    others = [f for f in system.getForces() if not isinstance(f, (openmm.NonbondedForce, openmm.CMMotionRemover))]
    unsupported = [type(f).__name__ for f in others if not isinstance(
        f, (openmm.HarmonicBondForce, openmm.HarmonicAngleForce, openmm.PeriodicTorsionForce))]
    if len(nonbonded) != 1 or unsupported:
        raise ConfigurationError(
            "unperturbed start conformations need a force field whose System has one NonbondedForce and bonded "
            f"terms only (harmonic bonds and angles, periodic torsions); this one has {len(nonbonded)} "
            f"NonbondedForce(s){' and ' + ', '.join(sorted(set(unsupported))) if unsupported else ''}")
    if any(system.isVirtualSite(i) for i in range(n)):
        raise ConfigurationError("unperturbed start conformations do not support virtual sites (the System has some); "
                                 "use start_conformations: conformer")
    nb = nonbonded[0]
    params = [nb.getParticleParameters(i) for i in range(n)]
    q = np.array([p[0].value_in_unit(openmm.unit.elementary_charge) for p in params])
    sig = np.array([p[1].value_in_unit(openmm.unit.nanometer) for p in params])
    eps = np.array([p[2].value_in_unit(openmm.unit.kilojoule_per_mole) for p in params])
    exceptions = {}
    for k in range(nb.getNumExceptions()):
        i, j, qq, s, e = nb.getExceptionParameters(k)
        exceptions[(min(i, j), max(i, j))] = (qq.value_in_unit(openmm.unit.elementary_charge**2),
                                              s.value_in_unit(openmm.unit.nanometer),
                                              e.value_in_unit(openmm.unit.kilojoule_per_mole))
    pairs = []
    for (i, j) in bond_separations(n, bonds, max_bonds):
        if (i, j) in exceptions:
            qq, s, e = exceptions[(i, j)]
        else:
            qq, s, e = q[i] * q[j], 0.5 * (sig[i] + sig[j]), float(np.sqrt(eps[i] * eps[j]))
        if qq != 0.0 or e != 0.0:
            pairs.append((i, j, qq, s, e))
    out = openmm.System()
    for _ in range(copies):
        for i in range(n):
            out.addParticle(system.getParticleMass(i))
    for c in range(copies):
        for k in range(system.getNumConstraints()):
            i, j, d = system.getConstraintParameters(k)
            out.addConstraint(i + c * n, j + c * n, d)
    for f in others:
        g = type(f)()
        if isinstance(f, openmm.HarmonicBondForce):
            terms = [f.getBondParameters(k) for k in range(f.getNumBonds())]
            for c in range(copies):
                for i, j, r0, k in terms:
                    g.addBond(i + c * n, j + c * n, r0, k)
        elif isinstance(f, openmm.HarmonicAngleForce):
            terms = [f.getAngleParameters(k) for k in range(f.getNumAngles())]
            for c in range(copies):
                for i, j, k_, a0, k in terms:
                    g.addAngle(i + c * n, j + c * n, k_ + c * n, a0, k)
        else:
            terms = [f.getTorsionParameters(k) for k in range(f.getNumTorsions())]
            for c in range(copies):
                for i, j, k_, l_, per, ph, k in terms:
                    g.addTorsion(i + c * n, j + c * n, k_ + c * n, l_ + c * n, per, ph, k)
        out.addForce(g)
    pair = openmm.CustomBondForce(f"4*eps*((sig/r)^12-(sig/r)^6) + {_COULOMB}*qq/r")
    for name in ("qq", "sig", "eps"):
        pair.addPerBondParameter(name)
    for c in range(copies):
        for i, j, qq, s, e in pairs:
            pair.addBond(i + c * n, j + c * n, [qq, s, e])
    out.addForce(pair)
    return out


def unperturbed_conformations(molecule: Any, forcefield: Any, count: int, *, temperature: float,
                              max_bonds: int = DEFAULT_MAX_BONDS, duration_ps: float = 200.0, timestep_ps: float = 0.002,
                              friction_per_ps: float = 5.0, seed: int = 0, platform: str | None = None,
                              progress: bool = False) -> tuple[np.ndarray, dict]:
    """``count`` conformations of ``molecule`` (an OpenFF ``Molecule`` with partial charges) from its unperturbed
    ensemble at ``temperature`` (K) under ``forcefield`` (an OpenFF ``ForceField``).

    ``count`` copies, started from distinct RDKit conformers where the molecule has them, run ``duration_ps`` of
    Langevin dynamics in vacuum (:func:`unperturbed_system`); the last frame of each copy is its conformation.
    ``platform`` is an OpenMM platform name (default: :func:`~openmm_cgml.reference.choose_platform`'s
    ``"auto"``).  ``progress`` shows a bar over the run.

    Returns
    -------
    positions : ndarray, shape (count, n_atoms, 3)
        nm, each copy centred on its centroid.
    info : dict
        ``max_bonds``, ``duration_ps``, the copies' mean squared radius of gyration (nm^2) at the start and over
        the last and the second-last quarter of the run with its standard error over copies, and ``settled``: the
        two quarters agree within 2 standard errors (the copies have forgotten their start; otherwise a warning
        is logged).
    """
    import openmm
    from openff.toolkit import Molecule, Topology
    from openff.units import unit as off_unit

    from .run import choose_platform

    if count < 1:
        raise ConfigurationError(f"count must be at least 1, got {count}")
    if not duration_ps > 0 or not timestep_ps > 0:
        raise ConfigurationError(f"duration_ps and timestep_ps must be positive, got {duration_ps} and {timestep_ps}")
    if molecule.partial_charges is None:
        raise ConfigurationError("unperturbed_conformations needs a molecule with partial charges")
    mol = Molecule(molecule)
    # distinct starts: RDKit conformers (as many as it gives, up to count), reused in turn
    mol.generate_conformers(n_conformers=min(count, 64), rms_cutoff=0.5 * off_unit.angstrom)
    starts = [np.asarray(c.m_as("nanometer")) for c in mol.conformers]
    one = forcefield.create_interchange(Topology.from_molecules([mol]), charge_from_molecules=[mol]).to_openmm_system()
    bonds = [(b.atom1_index, b.atom2_index) for b in mol.bonds]
    system = unperturbed_system(one, bonds, count, max_bonds=max_bonds)
    n = mol.n_atoms
    start = np.concatenate([starts[k % len(starts)] for k in range(count)])  # the copies do not interact
    integrator = openmm.LangevinMiddleIntegrator(temperature, friction_per_ps, timestep_ps)
    integrator.setRandomNumberSeed(int(seed) + 1)
    # "auto" as the reference runs choose: not OpenMM's own default, which can pick an OpenCL runtime on the CPU
    context = openmm.Context(system, integrator, choose_platform(platform or "auto"))
    context.setPositions(start)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(temperature, int(seed) + 1)
    steps = max(4, int(round(duration_ps / timestep_ps)))
    chunk = max(1, steps // 40)
    rg2 = []

    def frame() -> np.ndarray:
        x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        return np.asarray(x).reshape(count, n, 3)

    def mean_rg2(x: np.ndarray) -> np.ndarray:
        return ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=2).mean(axis=1)

    rg2_start = float(mean_rg2(frame()).mean())
    done = 0
    with tqdm(total=steps, desc="unperturbed conformations", unit="step", disable=not progress) as bar:
        while done < steps:
            k = min(chunk, steps - done)
            integrator.step(k)
            done += k
            bar.update(k)
            rg2.append(mean_rg2(frame()))
    x = frame()
    rg2 = np.array(rg2)  # (samples, copies)
    q = max(1, len(rg2) // 4)

    def quarter(block: np.ndarray) -> list[float]:
        per_copy = block.mean(axis=0)
        return [float(per_copy.mean()), float(per_copy.std(ddof=1) / np.sqrt(count)) if count > 1 else 0.0]

    third, last = quarter(rg2[-2 * q:-q] if len(rg2) >= 2 * q else rg2), quarter(rg2[-q:])
    change = last[0] - third[0]
    change_err = float(np.hypot(third[1], last[1]))
    info = {"max_bonds": int(max_bonds), "duration_ps": float(steps * timestep_ps), "copies": int(count),
            "rdkit_starts": len(starts), "rg2_start_nm2": rg2_start, "rg2_third_quarter_nm2": third,
            "rg2_last_quarter_nm2": last, "settled": bool(abs(change) <= 2 * change_err)}
    if not info["settled"]:
        logger.warning("unperturbed conformations of %s: the copies' mean Rg^2 still changes between the last two "
                       "quarters of the %.0f ps run (%+.3g +- %.2g nm^2, over 2 standard errors): the sampled "
                       "conformations remember their RDKit starts; a longer duration_ps samples the ensemble",
                       mol.to_smiles(explicit_hydrogens=False), info["duration_ps"], change, change_err)
    logger.info("unperturbed conformations of %s: %d copies, %.0f ps; mean Rg^2 %.3g -> %.3g nm^2",
                mol.to_smiles(explicit_hydrogens=False), count, info["duration_ps"], rg2_start,
                info["rg2_last_quarter_nm2"][0])
    return x - x.mean(axis=1, keepdims=True), info

"""The two molecule families of a sweep: united-atom molecules defined directly in OpenMM (fast) and OpenFF.

The **united-atom family** is a flexible, branched united-atom molecule (TraPPE-UA sites: one LJ particle per
CH3 / CH2 / CH / C group) with harmonic bonds, harmonic angles (every pair of bonds sharing a site), one
threefold periodic torsion per proper dihedral and LJ through a ``NonbondedForce`` (no charges, cutoff with the
long-range dispersion correction, 1-2 and 1-3 pairs excluded, 1-4 pairs at half strength).  Its box is built on
a lattice (each molecule in the orientation, of a few random ones, furthest from its neighbours), minimised, and
its AA reference runs through :func:`openmm_cgml.simulation.run_simulation` (Langevin equilibration, Bussi
production) into the package's dataset format, so ``cgml map``, ``cgml ibi``, ``cgml run`` and ``cgml compare``
read it unchanged.

The **openff family** runs the package's own AA reference (:func:`openmm_cgml.workflows.run_reference`) with the
sample's parameters written into the force field before the System is created (``ReferenceConfig``'s
``forcefield_parameters``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .definition import UA_DEFAULTS, UA_SITES, SweepConfig, UnitedAtomMolecule

__all__ = ["UnitedAtomSystem", "united_atom_system", "united_atom_box", "run_united_atom_reference",
           "openff_reference_config", "molecule_terms", "default_forcefield", "sample_forcefield"]

logger = logging.getLogger(__name__)

AVOGADRO = 6.02214076e23


def molecule_terms(molecule: UnitedAtomMolecule) -> tuple[list, list, list, list]:
    """Bonds, angles, proper dihedrals and 1-4 pairs (site indices of one molecule) from the bond graph."""
    import networkx as nx

    g = nx.Graph([tuple(b) for b in molecule.bonds])
    g.add_nodes_from(range(len(molecule.sites)))
    bonds = sorted(tuple(sorted(b)) for b in molecule.bonds)
    angles = sorted({(a, j, b) if a < b else (b, j, a) for j in g for a in g[j] for b in g[j] if a != b})
    dihedrals = set()
    for j, k in bonds:
        for i in g[j]:
            for m in g[k]:
                if i not in (j, k) and m not in (j, k) and i != m:
                    d = (i, j, k, m)
                    dihedrals.add(min(d, d[::-1]))
    dihedrals = sorted(dihedrals)
    pairs14 = sorted({(min(d[0], d[3]), max(d[0], d[3])) for d in dihedrals})
    return bonds, angles, dihedrals, pairs14


@dataclass
class UnitedAtomSystem:
    """A united-atom box: the System, its topology, packed and minimised positions, box (nm) and the values of
    the parameters it was built with."""

    system: object
    topology: object
    positions: np.ndarray
    box_vectors: np.ndarray
    parameters: dict


#: The keys of a united-atom force field (:func:`default_forcefield`) by (handler, attribute).
_FF_KEYS = {("Bonds", "k"): "bond_k", ("Bonds", "length"): "bond_length", ("Angles", "k"): "angle_k",
            ("Angles", "angle"): "angle", ("ProperTorsions", "k1"): "torsion_k"}


def default_forcefield(molecule: UnitedAtomMolecule) -> dict:
    """The family's force field of ``molecule``: ``bond_k``, ``bond_length``, ``angle_k``, ``angle``,
    ``torsion_k`` (:data:`UA_DEFAULTS`) and ``lj`` ``{site: (epsilon, sigma)}`` of its sites (TraPPE-UA)."""
    return {**{key: UA_DEFAULTS[hk] for hk, key in _FF_KEYS.items()},
            "lj": {t: (UA_SITES[t][1], UA_SITES[t][2]) for t in sorted(set(molecule.sites))}}


def sample_forcefield(config: SweepConfig, values: dict[str, float]) -> dict:
    """The force field of a sample: :func:`default_forcefield` with the sample's values (by parameter column)
    written in."""
    ff = default_forcefield(config.molecule_model())
    lj = {t: list(v) for t, v in ff["lj"].items()}
    for p in config.parameters:
        v = values[p.column()]
        if p.handler == "vdW":
            lj[p.site][0 if p.attribute == "epsilon" else 1] = v
        else:
            ff[_FF_KEYS[(p.handler, p.attribute)]] = v
    return {**ff, "lj": {t: tuple(v) for t, v in sorted(lj.items())}}


def united_atom_system(molecule: UnitedAtomMolecule, ff: dict, box_length: float):
    """The OpenMM System and Topology of ``molecule.count`` united-atom molecules with the force field ``ff``
    (keys as returned by :func:`sample_forcefield`) in a cubic box of ``box_length`` nm."""
    import openmm
    from openmm import app

    bonds, angles, dihedrals, pairs14 = molecule_terms(molecule)
    n_site = len(molecule.sites)
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * box_length))
    topology = app.Topology()
    topology.setPeriodicBoxVectors(np.eye(3) * box_length)
    chain = topology.addChain()
    carbon = app.Element.getBySymbol("C")
    hb, ha, ht = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce(), openmm.PeriodicTorsionForce()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nb.setCutoffDistance(molecule.cutoff)
    nb.setUseDispersionCorrection(True)
    theta0 = np.deg2rad(ff["angle"])
    for m in range(molecule.count):
        res = topology.addResidue(molecule.name, chain)
        atoms = []
        for i, site in enumerate(molecule.sites):
            system.addParticle(UA_SITES[site][0])
            eps, sigma = ff["lj"][site]
            nb.addParticle(0.0, sigma, eps)
            atoms.append(topology.addAtom(f"C{i + 1}", carbon, res))
        o = m * n_site
        for a, b in bonds:
            hb.addBond(o + a, o + b, ff["bond_length"], ff["bond_k"])
            topology.addBond(atoms[a], atoms[b])
        for a, b, c in angles:
            ha.addAngle(o + a, o + b, o + c, theta0, ff["angle_k"])
        for a, b, c, d in dihedrals:
            ht.addTorsion(o + a, o + b, o + c, o + d, 3, 0.0, ff["torsion_k"])
    for m in range(molecule.count):
        o = m * n_site
        for a, b in bonds:
            nb.addException(o + a, o + b, 0.0, 1.0, 0.0)
        for a, _, c in angles:
            nb.addException(o + a, o + c, 0.0, 1.0, 0.0)
        for a, d in pairs14:
            (e1, s1), (e2, s2) = ff["lj"][molecule.sites[a]], ff["lj"][molecule.sites[d]]
            nb.addException(o + a, o + d, 0.0, 0.5 * (s1 + s2), 0.5 * np.sqrt(e1 * e2))
    for i, force in enumerate((hb, ha, ht, nb)):
        force.setForceGroup(i)
        system.addForce(force)
    return system, topology


def _template(molecule: UnitedAtomMolecule, bond_length: float, rng) -> np.ndarray:
    """One conformer (nm): sites placed along the bond tree at tetrahedral-ish angles, no two sites closer
    than 0.2 nm."""
    import networkx as nx

    g = nx.Graph([tuple(b) for b in molecule.bonds])
    g.add_nodes_from(range(len(molecule.sites)))
    pos = {0: np.zeros(3)}
    for parent, child in nx.bfs_edges(g, 0):
        for _ in range(200):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            cand = pos[parent] + bond_length * u
            if all(np.linalg.norm(cand - p) > 0.2 for k, p in pos.items() if k != parent):
                break
        pos[child] = cand
    xyz = np.array([pos[i] for i in range(len(molecule.sites))])
    return xyz - xyz.mean(0)


def _rotation(rng) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=rng).as_matrix()


def united_atom_box(config: SweepConfig, values: dict[str, float], *, seed: int, platform: str = "CPU",
                    threads: int | None = None) -> UnitedAtomSystem:
    """The minimised united-atom box of a sample (``values``: its parameters by column)."""
    import openmm
    from openmm import app, unit

    from ..reference.run import choose_platform, platform_properties

    mol = config.molecule_model()
    ff = sample_forcefield(config, values)
    mass = sum(UA_SITES[s][0] for s in mol.sites) * mol.count
    length = (mass / AVOGADRO * 1e21 / mol.density) ** (1 / 3)
    if length < 2 * mol.cutoff:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(f"molecule: the box ({length:.3f} nm) is smaller than twice the cutoff "
                                 f"({mol.cutoff} nm); use more molecules or a shorter cutoff")
    system, topology = united_atom_system(mol, ff, length)
    rng = np.random.default_rng(seed)
    template = _template(mol, ff["bond_length"], rng)
    n_side = int(np.ceil(mol.count ** (1 / 3)))
    spacing = length / n_side
    cells = np.array([(i, j, k) for i in range(n_side) for j in range(n_side) for k in range(n_side)], float)
    cells = cells[rng.permutation(len(cells))[: mol.count]]
    placed: list[np.ndarray] = []
    for c in cells:
        centre = (c + 0.5) * spacing
        best, best_d = None, -1.0
        for _ in range(8):
            xyz = template @ _rotation(rng).T + centre
            if placed:
                others = np.concatenate(placed[-3 * n_side * n_side:])
                diff = xyz[:, None, :] - others[None, :, :]
                diff -= length * np.round(diff / length)
                d = float(np.sqrt((diff**2).sum(-1)).min())
            else:
                d = np.inf
            if d > best_d:
                best, best_d = xyz, d
        placed.append(best)
    positions = np.concatenate(placed)
    plat = choose_platform(platform)
    integrator = openmm.VerletIntegrator(0.001)
    sim = app.Simulation(topology, system, integrator, plat, platform_properties(plat, threads))
    sim.context.setPositions(positions)
    sim.minimizeEnergy(tolerance=10.0, maxIterations=2000)
    positions = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return UnitedAtomSystem(system, topology, np.asarray(positions), np.eye(3) * length, ff)


def run_united_atom_reference(config: SweepConfig, values: dict[str, float], temperature: float, output: Path, *,
                              seed: int, platform: str = "CPU", threads: int | None = None) -> Path:
    """Build and record the AA reference of a united-atom sample to ``output`` (a package dataset): Langevin
    equilibration for ``pipeline.aa.nvt``, then the production under the transport-safe thermostat
    (:data:`~openmm_cgml.thermostat.TRANSPORT_DEFAULT`) for ``pipeline.aa.production``."""
    from ..simulation import run_simulation
    from ..thermostat import TRANSPORT_DEFAULT

    aa = config.pipeline.aa
    box = united_atom_box(config, values, seed=seed, platform=platform, threads=threads)
    report = int(round(aa.report_interval / aa.timestep))
    steps = int(round(aa.production / aa.timestep)) // report * report
    mol = config.molecule_model()
    metadata = {"kind": "all-atom reference", "family": "united-atom (TraPPE-UA sites, openmm_cgml sweep)",
                "forcefield": {k: (v if k != "lj" else {t: list(x) for t, x in v.items()})
                               for k, v in box.parameters.items()},
                "forcefield_units": {"bond_k": "kJ/mol/nm**2", "bond_length": "nm", "angle_k": "kJ/mol/rad**2",
                                     "angle": "degree", "torsion_k": "kJ/mol (periodicity 3)",
                                     "lj": "[epsilon kJ/mol, sigma nm]"},
                "molecule": mol.to_data(), "cutoff_nm": mol.cutoff,
                "constraints": {"n_constraints": 0, "pairs": [], "note": "flexible: no constraints"},
                "molecule_index": np.repeat(np.arange(mol.count), len(mol.sites)).tolist()}
    run_simulation(box.system, box.topology, box.positions, output, temperature=temperature, timestep=aa.timestep,
                   thermostat=TRANSPORT_DEFAULT, steps=steps, report_interval=report,
                   equilibration_steps=int(round(aa.nvt / aa.timestep)), box_vectors=box.box_vectors,
                   fields=("positions", "velocities", "forces"), kind="all-atom", platform=platform, seed=seed,
                   metadata=metadata)
    return output


def openff_reference_config(config: SweepConfig, values: dict[str, float], temperature: float, *, seed: int,
                            platform: str, threads: int | None) -> dict:
    """The ``cgml reference`` configuration of an openff sample: its parameters in ``forcefield_parameters``."""
    mol = config.molecule_model()
    aa = config.pipeline.aa
    report = aa.report_interval
    data = {
        "components": [{"smiles": mol.smiles, "count": mol.count, "name": mol.name}],
        "density": f"{mol.density} g/cm**3", "forcefield": mol.forcefield, "charge_method": mol.charge_method,
        "forcefield_parameters": [{"handler": p.handler, "smirks": p.smirks, "attribute": p.attribute,
                                   "value": f"{values[p.column()]!r} {p.unit}"} for p in config.parameters],
        "temperature": f"{temperature} K", "timestep": f"{aa.timestep} ps", "nvt": f"{aa.nvt} ps",
        "npt": f"{aa.npt} ps", "production": f"{aa.production} ps", "report_interval": f"{report} ps",
        "checkpoint_interval": f"{_checkpoint_interval(aa.production, report)} ps",
        "platform": platform, "seed": seed, "threads": threads,
    }
    if aa.max_production is not None:
        data["max_production"] = f"{aa.max_production} ps"
    if mol.cutoff is not None:
        data["cutoff"] = f"{mol.cutoff} nm"
    return data


def _checkpoint_interval(production: float, report: float) -> float:
    """About a tenth of the production, a whole number of report intervals."""
    n = max(1, int(round(production / report / 10)))
    return float(f"{n * report:.10g}")

"""Molecule descriptors: inputs of a learned model that do not depend on one molecule's parameter list, so one
model can be trained on several molecules and asked about another (Bag et al.'s outlook, J. Chem. Theory Comput.
2022: generalise the input features).

Each descriptor is a statistic of the force-field parameters a molecule is *assigned* (its bonds, angles,
proper torsions and Lennard-Jones sites, whatever parameter list produced them) or of its bond graph, plus the
liquid's density:

``n_sites``
    heavy atoms (united-atom sites) per molecule
``branching``
    fraction of the heavy atoms bonded to three or more heavy atoms
``bond_k``, ``bond_length``
    mean force constant (kJ/mol/nm**2) and length (nm) over the heavy-atom bonds
``angle_k``, ``angle``
    mean force constant (kJ/mol/rad**2) and angle (degree) over the heavy-atom angles
``torsion_k``
    mean over the heavy-atom proper torsions of their summed ``|k_n|`` (kJ/mol)
``epsilon``, ``sigma``
    mean Lennard-Jones epsilon (kJ/mol) and sigma (nm) over the heavy atoms
``density``
    the liquid's density (g/cm**3): a state variable beside the temperature

A molecule without bonds, angles or torsions has 0 for their statistics.  Heavy atoms only: an all-atom
molecule's hydrogens are part of its heavy atoms' sites in a united-atom one, so the two families' descriptors
describe the same carbon skeleton (a model still learns one family at a time).

:func:`sample_descriptors` evaluates them for a sweep sample (its molecule and parameter values);
:func:`united_atom_descriptors` and :func:`openff_descriptors` for a molecule and force field.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import ConfigurationError
from .data import Feature

__all__ = ["DESCRIPTORS", "descriptor_features", "molecule_descriptors", "openff_descriptors", "sample_descriptors",
           "united_atom_descriptors"]

#: (column, handler, attribute, unit) of each descriptor; handler ``topology`` / ``state`` for the graph and
#: the density.
DESCRIPTORS: tuple[tuple[str, str, str, str], ...] = (
    ("n_sites", "topology", "heavy atoms", ""),
    ("branching", "topology", "fraction of branch points", ""),
    ("bond_k", "Bonds", "k", "kJ/mol/nm**2"),
    ("bond_length", "Bonds", "length", "nm"),
    ("angle_k", "Angles", "k", "kJ/mol/rad**2"),
    ("angle", "Angles", "angle", "degree"),
    ("torsion_k", "ProperTorsions", "sum |k|", "kJ/mol"),
    ("epsilon", "vdW", "epsilon", "kJ/mol"),
    ("sigma", "vdW", "sigma", "nm"),
    ("density", "state", "density", "g/cm**3"),
)


def descriptor_features() -> list[Feature]:
    """The descriptors as model inputs (:class:`~openmm_cgml.learn.data.Feature` of kind ``descriptor``)."""
    return [Feature(c, h, a, u, kind="descriptor") for c, h, a, u in DESCRIPTORS]


def _graph_terms(n_sites: int, bonds) -> dict[str, Any]:
    degree = np.zeros(n_sites, dtype=int)
    for a, b in bonds:
        degree[a] += 1
        degree[b] += 1
    return {"n_sites": float(n_sites), "branching": float(np.mean(degree >= 3))}


def _mean(values) -> float:
    """The mean, 0 for a molecule without such terms (no torsional stiffness where there is no torsion)."""
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else 0.0


def united_atom_descriptors(molecule, forcefield: dict | None = None) -> dict[str, float]:
    """The descriptors of a united-atom molecule (a sweep's ``molecule`` block: a
    :class:`~openmm_cgml.sweep.UnitedAtomMolecule` or its data) with the force field ``forcefield`` (keys
    ``bond_k``, ``bond_length``, ``angle_k``, ``angle``, ``torsion_k`` and ``lj`` ``{site: (epsilon, sigma)}``;
    missing keys take the family's defaults)."""
    from ..sweep import UnitedAtomMolecule
    from ..sweep.family import default_forcefield, molecule_terms

    mol = molecule if isinstance(molecule, UnitedAtomMolecule) else UnitedAtomMolecule.model_validate(molecule)
    defaults = default_forcefield(mol)
    ff = {**defaults, **(forcefield or {})}
    lj = {**defaults["lj"], **{t: tuple(v) for t, v in (ff.get("lj") or {}).items()}}
    bonds, angles, dihedrals, _ = molecule_terms(mol)
    out = _graph_terms(len(mol.sites), bonds)
    out.update({
        "bond_k": _mean([ff["bond_k"]] * len(bonds)),
        "bond_length": _mean([ff["bond_length"]] * len(bonds)),
        "angle_k": _mean([ff["angle_k"]] * len(angles)),
        "angle": _mean([ff["angle"]] * len(angles)),
        "torsion_k": _mean([abs(ff["torsion_k"])] * len(dihedrals)),
        "epsilon": _mean([lj[s][0] for s in mol.sites]),
        "sigma": _mean([lj[s][1] for s in mol.sites]),
        "density": float(mol.density),
    })
    return out


def openff_descriptors(smiles: str, forcefield, density: float) -> dict[str, float]:
    """The descriptors of the molecule ``smiles`` with the OpenFF force field ``forcefield`` (a name, a path or a
    loaded ``ForceField``, e.g. with a sample's parameters set), at ``density`` (g/cm**3): the parameters the
    force field assigns to its heavy-atom terms."""
    from ..reference.liquid import _to_molecule, load_forcefield

    ff = load_forcefield(forcefield) if isinstance(forcefield, str) else forcefield
    molecule = _to_molecule(smiles)
    labels = ff.label_molecules(molecule.to_topology())[0]
    heavy = {a.molecule_atom_index for a in molecule.atoms if a.atomic_number > 1}

    def heavy_terms(handler):
        return [p for atoms, p in labels.get(handler, {}).items() if set(atoms) <= heavy]

    bonds = heavy_terms("Bonds")
    angles = heavy_terms("Angles")
    torsions = heavy_terms("ProperTorsions")
    sites = [labels["vdW"][(i,)] for i in sorted(heavy)]

    def sigma(p):
        if getattr(p, "sigma", None) is not None:
            return p.sigma.m_as("nm")
        return p.rmin_half.m_as("nm") * 2 / 2 ** (1 / 6)

    out = _graph_terms(len(heavy), [(b.atom1_index, b.atom2_index) for b in molecule.bonds
                                    if b.atom1_index in heavy and b.atom2_index in heavy])
    out.update({
        "bond_k": _mean([p.k.m_as("kJ/mol/nm**2") for p in bonds]),
        "bond_length": _mean([p.length.m_as("nm") for p in bonds]),
        "angle_k": _mean([p.k.m_as("kJ/mol/rad**2") for p in angles]),
        "angle": _mean([p.angle.m_as("degree") for p in angles]),
        "torsion_k": _mean([sum(abs(k.m_as("kJ/mol")) for k in p.k) for p in torsions]),
        "epsilon": _mean([p.epsilon.m_as("kJ/mol") for p in sites]),
        "sigma": _mean([sigma(p) for p in sites]),
        "density": float(density),
    })
    return out


def molecule_descriptors(molecule: dict, *, parameters: dict | None = None, forcefield=None) -> dict[str, float]:
    """The descriptors of a sweep-style ``molecule`` block: united-atom (``sites`` and ``bonds``; ``parameters``
    its force field as in :func:`united_atom_descriptors`) or OpenFF (``smiles``; ``forcefield`` a name, path or
    ``ForceField``, default the block's ``forcefield``)."""
    if not isinstance(molecule, dict):
        raise ConfigurationError(f"molecule must be a mapping (a sweep's molecule block), got {type(molecule).__name__}")
    if "sites" in molecule:
        return united_atom_descriptors(molecule, parameters)
    if "smiles" in molecule:
        from ..sweep import OpenFFMolecule

        mol = OpenFFMolecule.model_validate(molecule)
        return openff_descriptors(mol.smiles, forcefield or mol.forcefield, mol.density)
    raise ConfigurationError("molecule: give sites and bonds (a united-atom molecule) or smiles (an OpenFF one)")


def sample_descriptors(config, values: dict[str, float], *, forcefield_cache: dict | None = None) -> dict[str, float]:
    """The descriptors of one sample of the sweep ``config``: its molecule with its parameter ``values`` (by
    column) written into the force field.  ``forcefield_cache`` (a dict kept by the caller) keeps the loaded
    OpenFF force field between samples."""
    from ..sweep.family import sample_forcefield

    mol = config.molecule_model()
    if config.family == "united-atom":
        return united_atom_descriptors(mol, sample_forcefield(config, values))
    from ..reference.liquid import load_forcefield, set_forcefield_parameters

    cache = forcefield_cache if forcefield_cache is not None else {}
    if mol.forcefield not in cache:
        cache[mol.forcefield] = load_forcefield(mol.forcefield)
    ff = cache[mol.forcefield]
    originals = [{"handler": p.handler, "smirks": p.smirks, "attribute": p.attribute,
                  "value": f"{_value(ff, p)!r} {p.unit}"} for p in config.parameters]
    set_forcefield_parameters(ff, [{"handler": p.handler, "smirks": p.smirks, "attribute": p.attribute,
                                    "value": f"{values[p.column()]!r} {p.unit}"} for p in config.parameters])
    try:
        return openff_descriptors(mol.smiles, ff, mol.density)
    finally:
        set_forcefield_parameters(ff, originals)


def _value(ff, p) -> float:
    from ..reference.liquid import forcefield_parameter_value

    return forcefield_parameter_value(ff, p.handler, p.smirks, p.attribute, p.unit)

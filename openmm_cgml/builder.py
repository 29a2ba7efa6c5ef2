"""CGSystemBuilder: an all-atom system + a mapping + CG force terms -> a coarse-grained OpenMM System."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .exceptions import ConfigurationError, InvalidSystemError
from .forces.base import CGSystemInfo, ForceTerm
from .mapping import CGMapping

__all__ = ["CGSystemBuilder", "energy_components", "getEnergyComponents"]

logger = logging.getLogger(__name__)

#: OpenMM has 32 force groups; the last is kept for forces without energy (CMMotionRemover).
_MAX_TERMS = 31


def _box_from(topology=None, system=None, boxVectors=None):
    from openmm import unit

    box = boxVectors
    if box is None and topology is not None:
        box = topology.getPeriodicBoxVectors()
    if box is None and system is not None and system.usesPeriodicBoundaryConditions():
        box = system.getDefaultPeriodicBoxVectors()
    if box is None:
        return None
    if hasattr(box, "value_in_unit"):
        box = box.value_in_unit(unit.nanometer)
    rows = []
    for v in box:
        if hasattr(v, "value_in_unit"):
            v = v.value_in_unit(unit.nanometer)
        rows.append([float(x) for x in v])
    arr = np.asarray(rows, dtype=float)
    if arr.shape != (3, 3):
        raise InvalidSystemError(f"box vectors must be three 3-vectors, got shape {arr.shape}")
    return arr


class CGSystemBuilder:
    """Build coarse-grained OpenMM Systems from a mapping and CG force terms.

    Parameters
    ----------
    mapping : CGMapping
        Atom -> bead map of the all-atom system.
    terms : sequence of ForceTerm
        CG force-field terms (pair tables, bonded priors, neural terms, ...).  Every
        term's forces get the term's name (``setName``; ``name:k`` when a term makes
        several) and the term's own force group (term i -> group i).

    Examples
    --------
    >>> builder = CGSystemBuilder(mapping, [pair_term, bond_term])   # doctest: +SKIP
    >>> system = builder.createSystem(aa_topology)                    # doctest: +SKIP
    >>> positions = builder.mapPositions(aa_positions)                # doctest: +SKIP
    """

    def __init__(self, mapping: CGMapping, terms: Sequence[ForceTerm]):
        if not isinstance(mapping, CGMapping):
            raise ConfigurationError(f"mapping must be a CGMapping, got {type(mapping).__name__}")
        terms = list(terms)
        for t in terms:
            if not isinstance(t, ForceTerm):
                raise ConfigurationError(f"every term must be a ForceTerm, got {type(t).__name__}")
        if len(terms) > _MAX_TERMS:
            raise ConfigurationError(f"at most {_MAX_TERMS} terms fit OpenMM's force groups, got {len(terms)}")
        names = [t.name for t in terms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigurationError(f"force terms need distinct names; repeated: {dup}")
        self.mapping = mapping
        self.terms = tuple(terms)
        self._box = None

    def systemInfo(self, boxVectors=None) -> CGSystemInfo:
        """The :class:`CGSystemInfo` handed to the terms (box in nm, or None)."""
        return self.mapping.system_info(_box_from(boxVectors=boxVectors) if boxVectors is not None else None)

    def createSystem(self, topology=None, system=None, *, boxVectors=None, removeCMMotion: bool = True):
        """A new CG :class:`openmm.System`.

        Parameters
        ----------
        topology : openmm.app.Topology, optional
            The all-atom topology (checked against the mapping; source of the box).
        system : openmm.System, optional
            The all-atom System (checked; source of the box if the topology has none).
            Neither input is modified.
        boxVectors : optional
            Overrides the box (3 vectors, nm or Quantity).
        removeCMMotion : bool
            Add a CMMotionRemover (group 31).
        """
        import openmm

        n = self.mapping.n_atoms
        if topology is not None and topology.getNumAtoms() != n:
            raise InvalidSystemError(f"the topology has {topology.getNumAtoms()} atoms, the mapping {n}")
        if system is not None and system.getNumParticles() != n:
            raise InvalidSystemError(f"the System has {system.getNumParticles()} particles, the mapping {n}")
        box = _box_from(topology, system, boxVectors)
        info = self.mapping.system_info(box)
        cg = openmm.System()
        for m in info.masses:
            cg.addParticle(float(m))
        if box is not None:
            cg.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
        for group, term in enumerate(self.terms):
            forces = term.create_forces(info)
            if not forces:
                raise ConfigurationError(f"term {term.name!r} created no forces")
            for k, force in enumerate(forces):
                force.setName(term.name if len(forces) == 1 else f"{term.name}:{k}")
                force.setForceGroup(group)
                cg.addForce(force)
        if removeCMMotion:
            remover = openmm.CMMotionRemover()
            remover.setName("CMMotionRemover")
            remover.setForceGroup(31)
            cg.addForce(remover)
        logger.info("built a CG system of %d beads with terms %s", cg.getNumParticles(), [t.name for t in self.terms])
        return cg

    def createTopology(self, boxVectors=None):
        """The CG :class:`openmm.app.Topology` (beads carry ``bead_type`` and ``mass``)."""
        return self.mapping.to_topology(_box_from(boxVectors=boxVectors) if boxVectors is not None else None)

    def mapPositions(self, positions, boxVectors=None):
        """Bead positions (``openmm.unit.Quantity`` in nm) from all-atom positions."""
        from openmm import unit

        box = _box_from(boxVectors=boxVectors) if boxVectors is not None else None
        return self.mapping.map_positions(positions, box) * unit.nanometer


def energy_components(context, groups_by_name: bool = True) -> dict[str, float]:
    """Potential energy (kJ/mol) of every force group of ``context``'s System, keyed by force name.

    Forces sharing a group (one term's several forces) are reported once, under the
    term's name (the part before ``:``).  The values sum to the total potential energy.
    """
    from openmm import unit

    system = context.getSystem()
    names: dict[int, str] = {}
    for force in system.getForces():
        g = force.getForceGroup()
        name = force.getName().split(":")[0] if groups_by_name else force.getName()
        names.setdefault(g, name)
    out = {}
    for g, name in sorted(names.items()):
        state = context.getState(getEnergy=True, groups={g})
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        if name in out:
            name = f"{name}[group {g}]"
        out[name] = energy
    return out


#: OpenMM-style alias.
getEnergyComponents = energy_components

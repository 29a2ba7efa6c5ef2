"""CGSystemBuilder: the convenience of building a CG System from the all-atom side (topology + mapping).

It is a thin layer over :class:`openmm_cgml.potential.CGPotential`, the one System assembler: the
CG topology is the mapping's (with the all-atom topology's or System's box), positions are mapped
from all-atom positions.
"""

from __future__ import annotations

from collections.abc import Sequence

from .exceptions import ConfigurationError, InvalidSystemError
from .forces.base import ForceTerm
from .geometry import as_box
from .mapping import CGMapping
from .potential import CGPotential, energy_components, getEnergyComponents

__all__ = ["CGSystemBuilder", "energy_components", "getEnergyComponents"]


def _box_from(topology=None, system=None, boxVectors=None):
    box = boxVectors
    if box is None and topology is not None:
        box = topology.getPeriodicBoxVectors()
    if box is None and system is not None and system.usesPeriodicBoundaryConditions():
        box = system.getDefaultPeriodicBoxVectors()
    return None if box is None else as_box(box, name="box vectors")


class CGSystemBuilder:
    """Build coarse-grained OpenMM Systems from a mapping and CG force terms.

    Parameters
    ----------
    mapping : CGMapping
        Atom -> bead map of the all-atom system.
    terms : sequence of ForceTerm
        CG force-field terms (pair tables, bonded terms, neural terms, ...); see :class:`CGPotential`.

    Examples
    --------
    >>> builder = CGSystemBuilder(mapping, [pair_term, bond_term])   # doctest: +SKIP
    >>> system = builder.createSystem(aa_topology)                    # doctest: +SKIP
    >>> positions = builder.mapPositions(aa_positions)                # doctest: +SKIP
    """

    def __init__(self, mapping: CGMapping, terms: Sequence[ForceTerm]):
        if not isinstance(mapping, CGMapping):
            raise ConfigurationError(f"mapping must be a CGMapping, got {type(mapping).__name__}")
        self.mapping = mapping
        self.potential = CGPotential(list(terms))
        self.terms = self.potential.terms

    def cgTopology(self, boxVectors=None):
        """The :class:`~openmm_cgml.topology.CGTopology` handed to the terms (box in nm, or None)."""
        return self.mapping.cg_topology(None if boxVectors is None else as_box(boxVectors))

    def createSystem(self, topology=None, system=None, *, boxVectors=None, removeCMMotion: bool = True):
        """A new CG :class:`openmm.System` (:meth:`CGPotential.createSystem` for the mapping's CG topology).

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
        n = self.mapping.n_atoms
        if topology is not None and topology.getNumAtoms() != n:
            raise InvalidSystemError(f"the topology has {topology.getNumAtoms()} atoms, the mapping {n}")
        if system is not None and system.getNumParticles() != n:
            raise InvalidSystemError(f"the System has {system.getNumParticles()} particles, the mapping {n}")
        box = _box_from(topology, system, boxVectors)
        return self.potential.createSystem(self.mapping.cg_topology(box), removeCMMotion=removeCMMotion)

    def createTopology(self, boxVectors=None):
        """The CG :class:`openmm.app.Topology` (beads carry ``bead_type`` and ``mass``)."""
        return self.cgTopology(boxVectors).to_openmm()

    def mapPositions(self, positions, boxVectors=None):
        """Bead positions (``openmm.unit.Quantity`` in nm) from all-atom positions."""
        from openmm import unit

        box = None if boxVectors is None else as_box(boxVectors)
        return self.mapping.map_positions(positions, box) * unit.nanometer

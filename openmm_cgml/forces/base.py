"""The contract between :class:`~openmm_cgml.builder.CGSystemBuilder` and CG force terms.

A force term (IBI pair tables, bonded priors, a neural network, ...) turns a
:class:`CGSystemInfo` into one or more OpenMM forces.  The builder gives every force
a name (``setName``) and its own force group, so energies can be split by term.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CGSystemInfo", "ForceTerm"]


@dataclass(frozen=True)
class CGSystemInfo:
    """What a force term needs to know about the coarse-grained system (MD units).

    Attributes
    ----------
    bead_types : tuple of str
        Type name of every bead, in particle order.
    molecule_index : ndarray of int, shape (n_beads,)
        Molecule each bead belongs to (intra- vs intermolecular terms).
    bonds : ndarray of int, shape (n_bonds, 2)
        Bead pairs bonded in the CG topology (atoms of the two beads are bonded).
    masses : ndarray, shape (n_beads,)
        Bead masses in dalton.
    box_vectors : ndarray, shape (3, 3) or None
        Periodic box vectors in nm (rows), or None for a non-periodic system.
    angles, dihedrals : ndarray of int, shapes (n, 3) and (n, 4)
        Bonded bead triplets and quadruplets along CG bonds.
    """

    bead_types: tuple[str, ...]
    molecule_index: np.ndarray
    bonds: np.ndarray
    masses: np.ndarray
    box_vectors: np.ndarray | None = None
    angles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=int))
    dihedrals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=int))

    @property
    def n_beads(self) -> int:
        return len(self.bead_types)

    @property
    def type_names(self) -> tuple[str, ...]:
        """Distinct bead types, sorted."""
        return tuple(sorted(set(self.bead_types)))

    @property
    def periodic(self) -> bool:
        return self.box_vectors is not None


class ForceTerm(abc.ABC):
    """One term of a CG force field.

    Subclasses implement :meth:`create_forces`; they must not keep references to the
    System they are added to, and must check their own validity against ``info``
    (unknown bead types, a cutoff longer than half the box, ...) with clear errors.
    """

    #: Short name; the builder names forces ``f"{name}"`` or ``f"{name}:{i}"``.
    name: str = "term"

    @abc.abstractmethod
    def create_forces(self, info: CGSystemInfo) -> list:
        """Return new :class:`openmm.Force` objects for the CG system described by ``info``."""

    def to_data(self) -> dict:
        """Plain data from which the term can be rebuilt (for provenance); optional."""
        raise NotImplementedError(f"{type(self).__name__} cannot be written as data")

"""The contract between :class:`~openmm_cgml.builder.CGSystemBuilder` and CG force terms.

A force term (IBI pair tables, bonded priors, a neural network, ...) turns a
:class:`CGSystemInfo` into one or more OpenMM forces.  The builder gives every force
a name (``setName``) and its own force group, so energies can be split by term.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CGSystemInfo", "ForceTerm", "mapping_fingerprint"]


def mapping_fingerprint(type_names: Sequence[str], molecule_templates: Sequence[Sequence[str]]) -> str:
    """A short hash of the bead types and the bead-type sequence of each distinct molecule."""
    data = {"types": sorted(type_names), "molecules": sorted([list(m) for m in molecule_templates])}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CGSystemInfo:
    """What a force term (and a model bound to the system) needs to know about the CG system (MD units).

    Attributes
    ----------
    bead_types : tuple of str
        Type name of every bead, in particle order.
    molecule_index : ndarray of int, shape (n_beads,)
        Molecule each bead belongs to (intra- vs intermolecular terms).
    bonds : ndarray of int, shape (n_bonds, 2)
        Bead pairs bonded in the CG topology (atoms of the two beads are bonded).
    masses : ndarray, shape (n_beads,) or None
        Bead masses in dalton (None only for a model's topology that never becomes a System).
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

    def _molecule_sequences(self) -> list[tuple[str, ...]]:
        seqs: dict[int, list[str]] = {}
        for t, m in zip(self.bead_types, self.molecule_index):
            seqs.setdefault(int(m), []).append(t)
        return [tuple(s) for s in seqs.values()]

    def molecule_templates(self) -> list[tuple[str, ...]]:
        """The distinct bead-type sequences of the molecules (sorted)."""
        return sorted(set(self._molecule_sequences()))

    def molecule_counts(self) -> dict[str, int]:
        """How many molecules of each bead-type sequence (``"A B A"``) the system holds."""
        counts: dict[str, int] = {}
        for seq in self._molecule_sequences():
            key = " ".join(seq)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def fingerprint(self) -> str:
        """The mapping fingerprint (:func:`mapping_fingerprint`) model bundles are checked against."""
        return mapping_fingerprint(self.type_names, self.molecule_templates())

    def mapping_data(self) -> dict:
        """Plain data describing the mapping, stored in model bundles."""
        return {
            "type_names": list(self.type_names),
            "molecules": [list(t) for t in self.molecule_templates()],
            "molecule_counts": self.molecule_counts(),
            "fingerprint": self.fingerprint(),
        }


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

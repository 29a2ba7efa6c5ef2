"""The contract of a CG force term, and the term registry.

A force term (IBI pair tables, bonded terms, a neural network, ...) turns a
:class:`~openmm_cgml.topology.CGTopology` into one or more new OpenMM forces.  The System assembler
(:class:`openmm_cgml.potential.CGPotential`) gives every force a name and a force group of its own,
so :func:`~openmm_cgml.potential.energy_components` can split the energy by force.

Contract of a :class:`ForceTerm` subclass:

``name``
    Instance attribute: the term's name in a System (forces are named ``name``, or
    ``name:<force name>`` when the term makes several; each force's own ``getName()`` then says
    which part it is, e.g. ``"network"``, ``"repulsion"``, ``"A-B"``).
``kind``
    Class attribute: the registry name (entry-point group ``openmm_cgml.term``), stored as
    ``"kind"`` in :meth:`to_data`.
``create_forces(topology) -> list[openmm.Force]``
    New forces for the system; the term checks its own validity against ``topology`` (unknown
    bead types, missing parameters, a cutoff longer than half the box) with clear errors, and keeps
    no reference to the System the forces go into.
``to_data() -> dict`` and ``from_data(data)``
    Plain JSON-ready data (with ``"kind"``) and its inverse: :func:`term_from_data` rebuilds any
    registered term, which is how IBI outputs and build configurations store force fields.
``example(topology)``
    A small instance valid for ``topology``, used by the contract test (``tests/test_contracts.py``).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

from ..exceptions import ConfigurationError
from ..registry import Registry
from ..topology import CGTopology

__all__ = ["ForceTerm", "TERMS", "term_from_data"]

#: Registry of force-term classes by ``kind`` (filled from the entry-point group ``openmm_cgml.term``).
TERMS = Registry("term")


class ForceTerm(abc.ABC):
    """One term of a CG force field (see the module documentation for the contract)."""

    #: Registry name of the term class (``"kind"`` in :meth:`to_data`).
    kind: ClassVar[str] = ""
    #: The term's name in a System (instances set their own).
    name: str = "term"

    @abc.abstractmethod
    def create_forces(self, topology: CGTopology) -> list:
        """Return new :class:`openmm.Force` objects for the CG system described by ``topology``."""

    def to_data(self) -> dict:
        """Plain data (with ``"kind"``) from which :meth:`from_data` rebuilds the term."""
        raise NotImplementedError(f"{type(self).__name__} cannot be written as data")

    @classmethod
    def from_data(cls, data: Mapping) -> ForceTerm:
        """Inverse of :meth:`to_data`."""
        raise NotImplementedError(f"{cls.__name__} cannot be read from data")

    @classmethod
    def example(cls, topology: CGTopology) -> ForceTerm:
        """A small valid instance for ``topology`` (contract tests)."""
        raise NotImplementedError(f"{cls.__name__} gives no example for the contract test")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def term_from_data(data: Mapping) -> ForceTerm:
    """Rebuild a registered term from its :meth:`ForceTerm.to_data` (the class is found by ``data["kind"]``)."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigurationError(f"force-term data must be a mapping with a 'kind', got {type(data).__name__}")
    cls = TERMS.get(str(data["kind"]))
    try:
        return cls.from_data(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"force-term data of kind {data['kind']!r} is incomplete or malformed: "
                                 f"{exc!r}") from exc

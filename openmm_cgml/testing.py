"""Public helpers for tests of openmm_cgml and of code built on it."""

from __future__ import annotations

import shutil
from typing import NamedTuple

import numpy as np
import pytest

__all__ = ["LatticeFluid", "has_openff", "lj_fluid", "requires_openff", "requires_ambertools"]


def has_openff() -> bool:
    """Whether the OpenFF toolkit and Interchange can be imported."""
    try:
        import openff.interchange  # noqa: F401
        import openff.toolkit  # noqa: F401
    except ImportError:
        return False
    return True


requires_openff = pytest.mark.skipif(not has_openff(), reason="the OpenFF toolkit is not installed")
requires_ambertools = pytest.mark.skipif(shutil.which("sqm") is None, reason="AmberTools (sqm) not installed")


class LatticeFluid(NamedTuple):
    """A Lennard-Jones fluid built by :func:`lj_fluid`: its ``system`` and ``topology``, ``positions`` (n, 3) and
    ``box`` (3, 3), both in nm."""

    system: object
    topology: object
    positions: np.ndarray
    box: np.ndarray


def lj_fluid(n_beads: int, box_length: float, *, sigma: float, epsilon: float, mass: float,
             cutoff: float | None = None, shift: float = 0.0, jitter: float = 0.0, seed: int = 0,
             dispersion_correction: bool = True, name: str = "B", residue: str | None = None,
             element: str | None = None) -> LatticeFluid:
    """One-type Lennard-Jones beads (``sigma``, ``box_length``, ``cutoff`` and ``shift`` in nm, ``epsilon`` in
    kJ/mol, ``mass`` in Da) on a simple cubic lattice filling a cube of ``box_length``: the lattice has the fewest
    sites per edge that hold ``n_beads``, the first ``n_beads`` sites are used, and every position is moved by
    ``shift`` and by Gaussian noise of ``jitter`` (seeded by ``seed``).

    With ``cutoff`` the fluid is periodic (``CutoffPeriodic``); with ``cutoff=None`` it is a cluster in vacuum
    (``NoCutoff``, no box on the System or Topology).  ``dispersion_correction`` is OpenMM's, on by default as
    there.  One residue per bead, named ``residue`` (default ``name``)."""
    import openmm
    from openmm import app

    if n_beads < 1 or box_length <= 0:
        raise ValueError(f"lj_fluid needs n_beads >= 1 and box_length > 0 (got {n_beads} and {box_length} nm)")
    if cutoff is not None and not 0 < cutoff <= box_length / 2:
        raise ValueError(f"cutoff {cutoff} nm must be positive and at most half the box ({box_length / 2} nm)")
    per_edge = round(n_beads ** (1 / 3))
    per_edge += per_edge**3 < n_beads
    grid = np.stack(np.meshgrid(*[np.arange(per_edge)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_beads]
    positions = grid * (box_length / per_edge) + shift
    if jitter:
        positions = positions + jitter * np.random.default_rng(seed).standard_normal(positions.shape)
    box = np.eye(3) * box_length
    system = openmm.System()
    nb = openmm.NonbondedForce()
    topology = app.Topology()
    chain = topology.addChain()
    bead_element = app.Element.getBySymbol(element) if element else None
    for _ in range(n_beads):
        system.addParticle(mass)
        nb.addParticle(0.0, sigma, epsilon)
        topology.addAtom(name, bead_element, topology.addResidue(residue or name, chain))
    if cutoff is None:
        nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    else:
        nb.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
        nb.setCutoffDistance(cutoff)
        nb.setUseDispersionCorrection(dispersion_correction)
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
        topology.setPeriodicBoxVectors(box)
    system.addForce(nb)
    return LatticeFluid(system, topology, positions, box)

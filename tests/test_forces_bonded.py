"""Tabulated bonded terms put all their tables into one OpenMM force (one row per bead-type key of a
Continuous2DFunction): each bonded tuple must still feel exactly its own table."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from openmm import unit
from scipy.interpolate import CubicSpline

from openmm_cgml import CGPotential, CGTopology
from openmm_cgml.analysis.distributions import compute_angles, compute_bonds, compute_dihedrals
from openmm_cgml.forces.bonded import TabulatedAngles, TabulatedBonds, TabulatedDihedrals
from openmm_cgml.topology import key_to_str


def chains():
    """Two molecules A-B-C-A and B-B-B-B (non-periodic): several keys of every kind."""
    types = ("A", "B", "C", "A", "B", "B", "B", "B")
    bonds = [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)]
    return CGTopology(types, np.repeat([0, 1], 4), np.array(bonds), np.full(8, 20.0))


def positions(seed):
    rng = np.random.default_rng(seed)
    out = []
    for m in range(2):
        x = np.array([3.0 * m, 0.0, 0.0])
        for _ in range(4):
            out.append(x.copy())
            x = x + rng.normal(size=3) * 0.04 + [0.3, 0.1 * rng.normal(), 0.1 * rng.normal()]
    return np.array(out)


def energy(system, x):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def test_every_tuple_feels_its_own_table():
    top = chains()
    r = np.linspace(0.15, 0.55, 200)
    bond_tables = {"A-B": (r, 300 * (r - 0.3) ** 2), "B-C": (r, 500 * (r - 0.32) ** 2 + 2.0),
                   "A-C": (r, 100 * (r - 0.28) ** 2 - 1.0), "B-B": (r, 50 * np.sin(8 * r))}
    th = np.linspace(0.5, np.pi - 0.05, 200)
    angle_tables = {"A-B-C": (th, 10 * (th - 2.0) ** 2), "B-C-A": (th, 5 * np.cos(th)), "B-B-B": (th, 2 * th)}
    phi = np.linspace(-np.pi, np.pi, 120, endpoint=False)
    dihedral_tables = {"A-B-C-A": (phi, 3 * np.cos(phi - 0.4)), "B-B-B-B": (phi, np.sin(2 * phi) + 0.5 * np.cos(phi))}
    terms = [TabulatedBonds(bond_tables), TabulatedAngles(angle_tables), TabulatedDihedrals(dihedral_tables)]
    for term in terms:
        system = CGPotential([term]).createSystem(top, removeCMMotion=False)
        assert system.getNumForces() == 1  # however many keys
        for seed in range(3):
            x = positions(seed)
            if isinstance(term, TabulatedDihedrals):
                idx, values = top.dihedrals, compute_dihedrals(x[None], top.dihedrals)[0]
                tables = dihedral_tables
            elif isinstance(term, TabulatedAngles):
                idx, values = top.angles, compute_angles(x[None], top.angles)[0]
                tables = angle_tables
            else:
                idx, values = top.bonds, compute_bonds(x[None], top.bonds)[0]
                tables = bond_tables
            expected = 0.0
            for tup, v in zip(idx, values):
                key = "-".join(min(tuple(top.bead_types[i] for i in tup), tuple(top.bead_types[i] for i in tup)[::-1]))
                xs, us = {key_to_str(k.split("-")): v for k, v in tables.items()}[key]
                if isinstance(term, TabulatedDihedrals):
                    spline = CubicSpline(np.append(xs, xs[0] + 2 * np.pi), np.append(us, us[0]), bc_type="periodic")
                    expected += float(spline(np.mod(v - xs[0], 2 * np.pi) + xs[0]))
                else:
                    expected += float(CubicSpline(xs, us, bc_type="natural")(v))
            assert energy(system, x) == pytest.approx(expected, rel=2e-3, abs=2e-3), type(term).__name__


def test_bonded_samples_use_openmms_dihedral_sign():
    """Dihedral tables inverted from the samples act on the same angle in OpenMM: the samples follow OpenMM's sign
    (an asymmetric, chiral distribution would otherwise be mirrored)."""
    from openmm_cgml.analysis.boltzmann import bonded_samples

    top = chains()
    for seed in range(3):
        x = positions(seed)
        phi = bonded_samples(x, top, dihedrals=True)["dihedral"]
        force = openmm.CustomCompoundBondForce(4, "dihedral(p1, p2, p3, p4)")
        force.addBond([int(i) for i in top.dihedrals[0]], [])
        system = openmm.System()
        for _ in range(top.n_beads):
            system.addParticle(1.0)
        system.addForce(force)
        assert energy(system, x) == pytest.approx(float(phi[("A", "B", "C", "A")][0]), abs=1e-9)

"""Building all-atom liquids from OpenFF molecules."""

import numpy as np
import openmm
import pytest
from openmm import unit

from openmm_cgml import (
    ConfigurationError,
    InvalidMoleculeError,
    InvalidSystemError,
    MissingDependencyError,
    UnknownNameError,
)
from openmm_cgml.testing import requires_ambertools, requires_openff

pytestmark = requires_openff


@pytest.fixture(scope="module")
def mixture():
    from openmm_cgml.reference import Component, build_liquid

    # default charge method (AM1-BCC) on a small two-component mixture
    return build_liquid([Component("CCO", 12, "ETOH"), Component("CC", 8, "ETH")], density="0.45 g/cm**3",
                        cutoff="0.6 nm", seed=3)


def _energy_forces(system, positions, box, platform="Reference"):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(positions)
    st = ctx.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


@requires_ambertools
def test_energy_equals_interchange_export(mixture):
    from openff.interchange.drivers import get_openmm_energies

    ours, _ = _energy_forces(mixture.system, mixture.positions, mixture.box_vectors)
    theirs = get_openmm_energies(mixture.interchange, combine_nonbonded_forces=True).total_energy.m_as("kilojoule/mole")
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-3)
    # the topology has one residue per molecule, named after its component
    names = [r.name for r in mixture.topology.residues()]
    assert names == ["ETOH"] * 12 + ["ETH"] * 8
    assert mixture.density == pytest.approx(0.45, rel=1e-9)
    assert {f.getName() for f in mixture.system.getForces()} >= {"NonbondedForce", "HarmonicBondForce"}
    groups = [f.getForceGroup() for f in mixture.system.getForces()]
    assert len(set(groups)) == len(groups)


@requires_ambertools
def test_forces_match_finite_differences(mixture):
    system, pos, box = mixture.system, mixture.positions.copy(), mixture.box_vectors
    openmm.LocalEnergyMinimizer  # noqa: B018 (forces at the packed geometry are large enough to test)
    _, forces = _energy_forces(system, pos, box)
    rng = np.random.default_rng(0)
    h = 1e-4
    for atom in rng.choice(len(pos), 4, replace=False):
        for k in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[atom, k] += h
            minus[atom, k] -= h
            numeric = -(_energy_forces(system, plus, box)[0] - _energy_forces(system, minus, box)[0]) / (2 * h)
            assert numeric == pytest.approx(forces[atom, k], rel=2e-3, abs=0.5)


@requires_ambertools
def test_packing_leaves_no_overlaps(mixture):
    pos, L = mixture.positions, mixture.box_vectors[0, 0]
    mol = mixture.molecule_index
    d = pos[:, None, :] - pos[None, :, :]
    d -= L * np.round(d / L)
    r = np.sqrt((d**2).sum(-1))
    inter = mol[:, None] != mol[None, :]
    assert r[inter].min() >= 0.15  # packmol tolerance 0.2 nm, checked with periodic images


def test_charged_components_must_be_neutral():
    from openmm_cgml.reference import Component, build_liquid

    ions = [Component("C[N+](C)(C)C", 6, "TMA"), Component("[Cl-]", 6, "CL")]
    liquid = build_liquid(ions, density="0.6 g/cm**3", charge_method="gasteiger", cutoff="0.6 nm")
    charges = [liquid.system.getForce(0).getParticleParameters(i)[0]._value for i in range(liquid.n_atoms)]
    assert sum(charges) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InvalidSystemError, match="neutral"):
        build_liquid([ions[0], Component("[Cl-]", 5)], density="0.6 g/cm**3", charge_method="gasteiger")


def test_bad_input_gives_clear_errors(monkeypatch):
    from openmm_cgml.reference import Component, build_liquid, liquid

    with pytest.raises(InvalidMoleculeError, match="invalid SMILES 'C1CC'"):
        build_liquid([Component("C1CC", 10)], density="0.7 g/cm**3")
    with pytest.raises(UnknownNameError, match="openff-2.2.0") as info:
        build_liquid([Component("CC", 10)], density="0.7 g/cm**3", forcefield="sage-9.9")
    assert "sage-9.9" in str(info.value)
    for bad in ("0 g/cm**3", "-1 g/cm**3", "50 g/cm**3"):
        with pytest.raises(ConfigurationError, match="not a liquid density"):
            build_liquid([Component("CC", 10)], density=bad, charge_method="zeros")
    with pytest.raises(InvalidSystemError, match="twice the cutoff"):
        build_liquid([Component("CC", 10)], density="0.5 g/cm**3", charge_method="zeros")
    with pytest.raises(ConfigurationError, match="count"):
        Component("CC", 0)
    with pytest.raises(ConfigurationError, match="exactly one"):
        build_liquid([Component("CC", 10)], density="0.5 g/cm**3", box_length="3 nm")
    monkeypatch.setattr(liquid, "_ensure_tool_on_path", lambda tool: None)
    with pytest.raises(MissingDependencyError, match="AmberTools"):  # charges come after the box checks
        build_liquid([Component("CC", 20)], density="0.5 g/cm**3", cutoff="0.5 nm")
    with pytest.raises(MissingDependencyError, match="packmol"):
        build_liquid([Component("CC", 20)], density="0.5 g/cm**3", charge_method="zeros", cutoff="0.5 nm")


@requires_ambertools
def test_am1bcc_works_without_the_venv_bin_on_path():
    """A venv used without activating it: AmberTools sits beside the interpreter, not on PATH."""
    import os
    import subprocess
    import sys

    code = (
        "import openff.toolkit\n"  # imported first: its registry is built while AmberTools is not on PATH
        "from openmm_cgml.reference import Component, build_liquid\n"
        "l = build_liquid([Component('CCO', 30)], density='0.6 g/cm**3', cutoff='0.6 nm')\n"
        "print(l.info['charge_method'], l.n_atoms)\n"
    )
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["am1bcc", "270"]

"""A temperature-conditioned model refined for structure at several temperatures: each refinement evaluates the
model at its own temperature, and the corrections at another temperature are interpolated linearly in T between
the two nearest refinements (clamped outside them)."""

import json
import logging
import shutil

import numpy as np
import openmm
import pytest
from _cg_fluid import simulate_known_fluid
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture)

from openmm_cgml.dataset import open_dataset
from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.forces.bonded import TabulatedBonds
from openmm_cgml.forces.neural import is_temperature_conditioned
from openmm_cgml.forces.tabulated import TabulatedPairPotential, read_openmm_tables, write_openmm_tables
from openmm_cgml.models import build_model, load_bundle, save_bundle
from openmm_cgml.potential import FORCE_FIELD_FORMAT, CGPotential, read_terms
from openmm_cgml.topology import CGTopology
from openmm_cgml.workflows.ibi import BASE_MODEL, IBIConfig, interpolate_refinements, run_ibi

TEMPS = (260.0, 300.0, 340.0)
R = np.linspace(0.25, 0.9, 66)
X_BOND = np.linspace(0.2, 0.4, 21)


def _pair_u(t: float) -> np.ndarray:
    """A correction that changes with temperature: a well whose depth is linear in T plus a T-dependent bump."""
    return -(0.5 + 0.01 * (t - 260.0)) * np.exp(-((R - 0.45) / 0.08) ** 2) + 1e-3 * (t - 300.0) ** 2 * (
        np.exp(-((R - 0.7) / 0.05) ** 2))


def _bond_u(t: float) -> np.ndarray:
    return (t / 100.0) * (X_BOND - 0.3) ** 2 * 100.0


@pytest.fixture(scope="module")
def fluid(tmp_path_factory):
    return simulate_known_fluid(tmp_path_factory.mktemp("fluid") / "fluid.h5", n_frames=12, interval=25, seed=4)


def _bundle(path, topology, *, seed: int = 0):
    """An untrained temperature-conditioned network with a bond and a repulsion prior, recorded as trained at
    TEMPS (the interpolation and the assembly do not depend on its weights)."""
    import torch

    torch.manual_seed(seed)
    model = build_model({"name": "schnet", "args": {
        "type_names": list(topology.type_names), "hidden": 8, "n_rbf": 8, "n_interactions": 1, "intra_cutoff": 0.5,
        "inter_cutoff": 0.8, "temperature": {"reference": 300.0, "scale": 40.0, "default": 300.0},
        "priors": [{"name": "harmonic_bond", "args": {"parameters": {"A-B": {"r0": 0.3, "k": 4000.0}}}},
                   {"name": "repulsion", "args": {"sigma": 0.3, "exponent": 12, "cutoff": 0.5}}]}}, topology)
    return save_bundle(path, model, topology, training={"temperatures_K": list(TEMPS)})


def _refinement(folder, bundle, t: float, *, bonded: bool = True, grid=R):
    """A refinement directory as `cgml ibi` with base_model writes it, with known correction tables."""
    folder.mkdir(parents=True)
    shutil.copyfile(bundle, folder / BASE_MODEL)
    u = np.interp(grid, R, _pair_u(t))
    pair = TabulatedPairPotential({k: (grid, u * (1 + 0.1 * n)) for n, k in enumerate(["A-A", "A-B", "B-B"])},
                                  cutoff=0.9)
    write_openmm_tables(folder / "pair_tables.json", pair)
    if bonded:
        term = TabulatedBonds({"A-B": (X_BOND, _bond_u(t))}, name="bonds_correction")
        (folder / "bonded_terms.json").write_text(json.dumps({"format": FORCE_FIELD_FORMAT, "format_version": 1,
                                                              "terms": [term.to_data()]}))
    (folder / "config.yaml").write_text(f"temperature: {t:g} K\nbase_model: {bundle}\n")
    return folder


def _energy(system, positions, box) -> float:
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(positions)
    return ctx.getState(getEnergy=True).getPotentialEnergy()._value


def test_corrections_are_interpolated_linearly_in_temperature_and_clamped_outside(fluid, tmp_path, caplog):
    ds = open_dataset(fluid)
    topology = CGTopology.from_dataset(ds)
    bundle = _bundle(tmp_path / "model.cgml", topology)
    assert is_temperature_conditioned(load_bundle(bundle))
    dirs = {t: _refinement(tmp_path / f"T{t:g}", bundle, t) for t in TEMPS}

    out = interpolate_refinements(dirs, 320.0, tmp_path / "T320")
    pair = read_openmm_tables(out / "pair_tables.json")
    x, u = pair.tables[("A", "B")]
    assert np.allclose(x, R) and np.allclose(u, 1.1 * 0.5 * (_pair_u(300.0) + _pair_u(340.0)), atol=1e-12)
    (bond,) = read_terms(out / "bonded_terms.json")
    assert bond.name == "bonds_correction"
    assert np.allclose(bond.tables[("A", "B")][1], _bond_u(320.0), atol=1e-12)  # linear in T, so exact
    record = json.loads(json.dumps(__import__("yaml").safe_load((out / "config.yaml").read_text())))
    assert record["weights"] == {"300 K": 0.5, "340 K": 0.5} and record["clamped"] is False
    assert (out / BASE_MODEL).read_bytes() == bundle.read_bytes()

    # the refined potential: the network at the directory's temperature (or the one given) plus the corrections
    potential = CGPotential(out)
    (neural,) = [t for t in potential.terms if t.kind == "neural"]
    assert neural.temperature == pytest.approx(320.0)
    assert [t.temperature for t in CGPotential(out, temperature="330 K").terms if t.kind == "neural"] == [330.0]
    pos, box = np.asarray(ds.positions[3], float), np.asarray(ds.box[3], float)
    total = _energy(potential.createSystem(topology), pos, box)
    parts = _energy(CGPotential(bundle, temperature=320.0).createSystem(topology), pos, box) + _energy(
        CGPotential([pair, bond]).createSystem(topology), pos, box)
    assert total == pytest.approx(parts, rel=1e-9, abs=1e-6)

    # at a refined temperature its own tables; beyond the range the nearest refinement's, with a warning
    exact = interpolate_refinements(dirs, "300 K", tmp_path / "T300i")
    assert np.allclose(read_openmm_tables(exact / "pair_tables.json").tables[("A", "A")][1], _pair_u(300.0))
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.workflows.ibi"):
        hot = interpolate_refinements(dirs, 380.0, tmp_path / "T380")
    assert "outside the refined temperatures" in caplog.text
    assert np.allclose(read_openmm_tables(hot / "pair_tables.json").tables[("A", "A")][1], _pair_u(340.0))
    assert json.loads(json.dumps(__import__("yaml").safe_load((hot / "config.yaml").read_text())))["clamped"]


def test_refinements_that_cannot_be_interpolated_are_refused(fluid, tmp_path):
    topology = CGTopology.from_dataset(open_dataset(fluid))
    bundle = _bundle(tmp_path / "model.cgml", topology)
    other = _bundle(tmp_path / "other.cgml", topology, seed=1)
    a = _refinement(tmp_path / "a", bundle, 260.0)
    with pytest.raises(ConfigurationError, match="different base models"):
        interpolate_refinements({260.0: a, 340.0: _refinement(tmp_path / "b", other, 340.0)}, 300.0, tmp_path / "x")
    with pytest.raises(ConfigurationError, match="different grids"):
        interpolate_refinements({260.0: a, 340.0: _refinement(tmp_path / "c", bundle, 340.0, grid=R[::2])}, 300.0,
                                tmp_path / "x")
    with pytest.raises(ConfigurationError, match="only one of the refinements"):
        interpolate_refinements({260.0: a, 340.0: _refinement(tmp_path / "d", bundle, 340.0, bonded=False)}, 300.0,
                                tmp_path / "x")
    with pytest.raises(ConfigurationError, match="not a refinement directory"):
        interpolate_refinements({260.0: a, 340.0: tmp_path}, 300.0, tmp_path / "x")
    with pytest.raises(ConfigurationError, match="at least one"):
        interpolate_refinements({}, 300.0, tmp_path / "x")
    # an IBI directory without a base model takes no options
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copyfile(a / "pair_tables.json", plain / "pair_tables.json")
    with pytest.raises(ConfigurationError, match="apply to model bundles"):
        CGPotential(plain, temperature=300.0)


def test_ibi_refines_a_temperature_conditioned_model_at_the_refinement_temperature(fluid, tmp_path):
    """`cgml ibi` with a temperature-conditioned base_model evaluates it at the run's temperature (without one, such
    a model refuses to be built), and the refined directory builds it at that temperature again."""
    topology = CGTopology.from_dataset(open_dataset(fluid))
    bundle = _bundle(tmp_path / "model.cgml", topology)
    with pytest.raises(ConfigurationError, match="temperature-conditioned"):
        CGPotential(bundle)
    run = run_ibi(IBIConfig.from_data({
        "cg_dataset": str(fluid), "output_dir": str(tmp_path / "refined"), "temperature": "280 K",
        "cutoff": "0.9 nm", "timestep": "2 fs", "max_iterations": 1, "equilibration_steps": 20,
        "production_steps": 100, "sample_interval": 20, "noise_factor": None, "platform": "Reference",
        "temperature_guard": None, "base_model": str(bundle), "initial": "zero", "bonded": "none"}))
    fixed = [t for t in run.result.terms if t.kind == "neural"]
    assert [t.temperature for t in fixed] == [280.0]
    assert [t.temperature for t in CGPotential(tmp_path / "refined").terms if t.kind == "neural"] == [280.0]

"""Learning alpha from sweeps (openmm_cgml.learn): the networks recover known relations, the predicted alpha is an
alpha model that round-trips, evaluates an OpenFF force field's parameters itself, warns outside its training
range and drives the reporter, and ``cgml learn`` trains and evaluates it from sweep directories."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from openmm_cgml.exceptions import ConfigurationError, CorruptFileError, DatasetError
from openmm_cgml.learn import Ensemble, PredictedAlpha, load_sweeps, split_by_sample, train_ensemble

ROOT = Path(__file__).resolve().parents[1]


def test_an_ensemble_recovers_a_smooth_relation_and_its_spread_is_calibrated():
    """y = sin(2 x1) + x2^2 / 2 with noise of sd 0.05: the test error approaches the noise and, calibrated on
    validation rows, about 95 % of the test targets lie within 1.96 predicted sd."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (400, 2))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.05, 400)
    ens = train_ensemble(x[:250], y[:250], x[250:320], y[250:320], n_members=4, epochs=1500, seed=1)
    ens.calibrate(x[250:320], y[250:320])
    mean, sd = ens.predict(x[320:])
    resid = y[320:] - mean[:, 0]
    assert np.sqrt(np.mean(resid**2)) < 0.08
    assert 0.85 <= np.mean(np.abs(resid) <= 1.96 * sd[:, 0]) <= 1.0
    # JSON round trip: the same predictions from plain numbers
    again = Ensemble.from_data(json.loads(json.dumps(ens.to_data())))
    np.testing.assert_allclose(again.predict(x[320:])[0], mean, rtol=1e-12)
    with pytest.raises(CorruptFileError, match="layer shapes"):
        bad = ens.to_data()
        bad["members"][0][0]["weight"] = [[1.0]]
        Ensemble.from_data(bad)
    with pytest.raises(ConfigurationError, match="finite"):
        train_ensemble(x[:10], np.r_[y[:9], np.nan], x[10:12], y[10:12])


def _table(k: float, eps: float, r: np.ndarray) -> np.ndarray:
    """A known pair potential (kJ/mol) of the two parameters: a soft wall and a well whose place and depth move."""
    return 60.0 * np.exp(-r / 0.08) - 2.5 * (eps / 0.8) * np.exp(-(((r - 0.5 - 0.1 * (k / 3e5 - 1)) / 0.12) ** 2))


def _write_ibi(work: Path, k: float, eps: float, bead: str = "A") -> None:
    """A sample's IBI output (pair table and harmonic bond) as known functions of its two parameters."""
    from openmm_cgml.forces.bonded import HarmonicBonds
    from openmm_cgml.forces.tabulated import TabulatedPairPotential, write_openmm_tables

    r = np.arange(0.005, 1.2, 0.01)
    (work / "ibi").mkdir(parents=True)
    table = TabulatedPairPotential({f"{bead}-{bead}": (r, _table(k, eps, r))}, cutoff=1.2, exclusions="molecule")
    write_openmm_tables(work / "ibi" / "pair_tables.json", table)
    bonds = HarmonicBonds({f"{bead}-{bead}": {"r0": 0.3 + 0.05 * eps, "k": 1000.0 * k / 3e5}})
    (work / "ibi" / "bonded_terms.json").write_text(json.dumps({"terms": [bonds.to_data()]}))


def _fake_definition(directory: Path, n: int, seed: int, *, family: str = "united-atom", name: str = "fake",
                     molecule: dict | None = None):
    """The definition (written as the directory's sweep.yaml) of a fake sweep varying bond k and CH3 epsilon."""
    from openmm_cgml.sweep import SweepConfig

    data = {"name": name, "family": family, "molecule": {"count": 27, "cutoff": "0.7 nm", **(molecule or {})},
            "parameters": [{"handler": "Bonds", "attribute": "k", "factor": [0.5, 2.0]},
                           {"handler": "vdW", "site": "CH3", "attribute": "epsilon", "factor": [0.8, 1.2]}],
            "sampling": {"n_samples": n, "seed": seed}}
    config = SweepConfig.from_data(data)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sweep.yaml").write_text(yaml.safe_dump(config.to_data()))
    return config


def _fake_sweep(directory: Path, n: int, *, seed: int = 0, family: str = "united-atom", noise: float = 0.03,
                alpha_fn=None, ibi: bool = False, dynamics: bool = False) -> Path:
    """A sweep directory (sweep.yaml, index.csv) whose alpha is a known function of two parameters (and, with
    ``ibi``, whose samples' IBI outputs are known functions of them too).  With ``dynamics`` the IBI outputs and
    D_AA depend on epsilon only, D_AA = 0.01 (0.8 / eps)^2 and D_CG = 1.5 D_AA (2 % errors): the CG model of
    epsilon sqrt(1.5) eps has the AA dynamics of eps."""
    import pandas as pd

    from openmm_cgml.sweep import generate_samples

    config = _fake_definition(directory, n, seed, family=family)
    rng = np.random.default_rng(seed)
    rows = []
    for s in generate_samples(config):
        k, eps = s.parameters["bonds_k"], s.parameters["vdw_epsilon_CH3"]
        truth = alpha_fn(k, eps) if alpha_fn else 2.0 * (k / 3e5) ** 0.3 * (eps / 0.8) ** -1.5
        rows.append({"sample_id": s.sample_id, "index": s.index, "status": "done", "temperature_K": s.temperature,
                     "seed": s.seed, **s.parameters, "alpha": truth * (1 + noise * rng.standard_normal()),
                     "alpha_err": truth * noise, "alpha_converged": True, "truth": truth})
        if dynamics:
            d_aa = 0.01 * (0.8 / eps) ** 2
            rows[-1].update({"D_AA": d_aa, "D_AA_err": 0.02 * d_aa, "D_CG": 1.5 * d_aa, "D_CG_err": 0.03 * d_aa})
        if ibi:
            _write_ibi(directory / "samples" / s.sample_id / "work", 3e5 if dynamics else k, eps)
    rows[0]["status"] = "failed"
    rows[1]["alpha_converged"] = False
    pd.DataFrame(rows).to_csv(directory / "index.csv", index=False)
    return directory


def test_sweeps_load_split_by_sample_and_refuse_mixtures(tmp_path):
    data = load_sweeps([_fake_sweep(tmp_path / "a", 30)])
    assert len(data.frame) == 28 and data.excluded == {"not done": 1, "no alpha": 0, "not converged": 1}
    assert [f.column for f in data.features] == ["bonds_k", "vdw_epsilon_CH3"]
    assert data.inputs().shape == (28, 3)
    split = split_by_sample(data, seed=3)
    sets = [set(v) for v in split.values()]
    assert sum(map(len, sets)) == 28 and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert {k: v.tolist() for k, v in split_by_sample(data, seed=3).items()} == {k: v.tolist() for k, v in split.items()}
    other = tmp_path / "b"
    _fake_sweep(other, 10)
    definition = yaml.safe_load((other / "sweep.yaml").read_text())
    definition["parameters"] = definition["parameters"][:1]
    (other / "sweep.yaml").write_text(yaml.safe_dump(definition))
    with pytest.raises(ConfigurationError, match="differ"):
        load_sweeps([tmp_path / "a", other])
    with pytest.raises(DatasetError, match="no sweep.yaml"):
        load_sweeps([tmp_path])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``cgml learn`` on a fake sweep of 120 samples (alpha a power law of two parameters, 3 % noise)."""
    from openmm_cgml.cli import main

    base = tmp_path_factory.mktemp("learn")
    _fake_sweep(base / "sweep", 120)
    (base / "learn.yaml").write_text(yaml.safe_dump({"sweeps": ["sweep"], "output": "out", "seed": 2, "potential": None,
                                                     "dynamics": None,
                                                     "alpha": {"n_members": 4, "epochs": 1500}}))
    assert main(["learn", str(base / "learn.yaml")]) == 0
    return base / "out"


def test_cgml_learn_predicts_held_out_alpha_within_its_intervals(trained):
    """On held-out samples the predicted alpha is within 10 % (median) of the measured, beats a constant alpha, and
    the measured values fall inside the predicted 95 % intervals about as often as promised."""
    evaluation = json.loads((trained / "evaluation.json").read_text())
    test = evaluation["test"]
    assert test["n"] >= 15
    assert test["median_relative_error"] < 0.10
    assert test["median_relative_error"] < 0.5 * evaluation["constant_baseline"]["median_relative_error"]
    assert test["within_95"] >= 0.8
    assert (trained / "alpha_parity.png").stat().st_size > 1000 and "| test |" in (trained / "evaluation.md").read_text()


def test_the_predicted_alpha_model_round_trips_warns_outside_its_range_and_drives_the_reporter(trained, tmp_path,
                                                                                              caplog):
    import openmm
    from openmm import app, unit

    from openmm_cgml.dynamics import TimeCorrelationReporter, load_alpha_model, save_alpha_model

    model = load_alpha_model(trained / "alpha_model.json")
    assert isinstance(model, PredictedAlpha)
    with pytest.raises(ConfigurationError, match="no parameters"):
        model.alpha(298.15)
    at = model.with_parameters({"bonds_k": 3e5, "vdw_epsilon_CH3": 0.8})
    truth = 2.0
    assert at.alpha("298.15 K") == pytest.approx(truth, rel=0.1)
    assert 0 < at.alpha_err(298.15) < 0.2 * truth
    save_alpha_model(tmp_path / "m.json", at)
    again = load_alpha_model(tmp_path / "m.json")
    assert again.alpha(298.15) == at.alpha(298.15) and again.alpha_err(298.15) == at.alpha_err(298.15)
    with pytest.raises(ConfigurationError, match="missing"):
        model.with_parameters({"bonds_k": 3e5})
    far = model.with_parameters({"bonds_k": 3e6, "vdw_epsilon_CH3": 0.8})
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.learn.alpha"):
        far.alpha(298.15)
    assert "bonds_k" in caplog.text and "outside the training range" in caplog.text
    assert far.outside_training_range(298.15) == ["bonds_k"]

    # the reporter rescales time with the predicted alpha at the integrator's temperature
    system = openmm.System()
    for _ in range(8):
        system.addParticle(40.0)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in np.eye(3) * 2.0))
    top = app.Topology()
    chain = top.addChain()
    for _ in range(8):
        top.addAtom("Ar", app.Element.getBySymbol("Ar"), top.addResidue("AR", chain))
    integrator = openmm.LangevinMiddleIntegrator(298.15, 1.0, 0.002)
    sim = app.Simulation(top, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(np.random.default_rng(0).uniform(0, 2, (8, 3)) * unit.nanometer)
    reporter = TimeCorrelationReporter(str(tmp_path / "tc.json"), 5, alpha=at, numLags=8, blockFactor=2, numLevels=1)
    sim.reporters.append(reporter)
    sim.step(50)
    reporter.close()
    out = json.loads((tmp_path / "tc.json").read_text())
    assert out["alpha"] == pytest.approx(at.alpha(298.15)) and out["alpha_err"] == pytest.approx(at.alpha_err(298.15))
    np.testing.assert_allclose(out["time_aa"], at.alpha(298.15) * np.array(out["time_cg"]))
    assert out["alpha_model"]["model"] == "predicted"


def test_the_predicted_alpha_reads_an_openff_force_fields_parameters_itself():
    """Features addressed by SMIRKS: the model reads their values from the force field it is given."""
    pytest.importorskip("openff.toolkit")
    from openmm_cgml.reference.liquid import forcefield_parameter_value, load_forcefield

    smirks = "[#6X4:1]-[#6X4:2]"
    value = forcefield_parameter_value(load_forcefield("openff-2.2.0"), "Bonds", smirks, "k", "kJ/mol/nm**2")
    layer = {"weight": [[0.2, 0.0]], "bias": [1.0]}
    args = {"ensemble": {"members": [[layer]], "x_mean": [value, 298.15], "x_scale": [value / 4, 1.0],
                         "y_mean": [0.0], "y_scale": [1.0], "extra_variance": [0.0]},
            "features": [{"column": "k_CC", "handler": "Bonds", "attribute": "k", "unit": "kJ/mol/nm**2",
                          "smirks": smirks}],
            "training_range": {"k_CC": [0.7 * value, 1.3 * value]}}
    model = PredictedAlpha(**args, forcefield="openff-2.2.0")
    assert model.parameters == {"k_CC": pytest.approx(value)}
    assert model.alpha(298.15) == pytest.approx(np.exp(1.0))
    stiffer = model.with_parameters({"k_CC": 1.25 * value})
    assert stiffer.alpha(298.15) == pytest.approx(np.exp(1.0 + 0.2))
    ua = dict(args, features=[{"column": "bonds_k", "handler": "Bonds", "attribute": "k", "unit": "kJ/mol/nm**2",
                               "site": None}])
    with pytest.raises(ConfigurationError, match="not addressed by SMIRKS"):
        PredictedAlpha(**ua, forcefield="openff-2.2.0")


def test_compare_sets_a_predicted_alpha_beside_the_measured_one(tmp_path):
    """``predicted_alpha`` in ``cgml compare``: the model is evaluated at the run's temperature and the row says
    whether the measured alpha (here 2, by construction) is inside the predicted interval."""
    from _dimers import write_dimers

    from openmm_cgml.dynamics import save_alpha_model
    from openmm_cgml.workflows import run_compare

    write_dimers(tmp_path / "aa.h5", 0.01, seed=1, kind="all-atom")
    write_dimers(tmp_path / "cg.h5", 0.02, seed=2, kind="coarse-grained")
    args = PredictedAlpha.example_args()
    for name, bias in (("right", np.log(2.0) - 0.8 - 0.1 * 0.4), ("wrong", np.log(4.0) - 0.8 - 0.1 * 0.4)):
        model_args = json.loads(json.dumps(args))
        model_args["ensemble"]["members"][0][0]["bias"] = [0.8 + bias]
        save_alpha_model(tmp_path / f"{name}.json", PredictedAlpha(**model_args))
    rows = {}
    for name in ("right", "wrong"):
        result = run_compare({"reference": "aa.h5", "model": "cg.h5", "output": f"out_{name}", "r_max": "1.2 nm",
                              "n_bins": 40, "predicted_alpha": {"file": f"{name}.json",
                                                                "parameters": {"bond_k": 1.2}}}, base_dir=tmp_path)
        rows[name] = {r.quantity: r for r in result.table.rows}
    measured = rows["right"]["alpha"]
    assert measured.model == pytest.approx(2.0, rel=0.25)
    right, wrong = rows["right"]["alpha (predicted)"], rows["wrong"]["alpha (predicted)"]
    assert right.model == pytest.approx(2.0, rel=1e-9) and right.reference == measured.model
    assert "inside the 95 % interval" in right.note and "outside the 95 % interval" in wrong.note
    assert wrong.model == pytest.approx(4.0, rel=1e-9)
    assert "alpha (predicted)" in (tmp_path / "out_right" / "comparison.md").read_text()


def test_a_predicted_potential_recovers_known_tables_and_bonded_terms_and_builds_a_system(tmp_path):
    """Tables and bonds that are known smooth functions of the parameters: the held-out samples' predicted tables
    are within a small fraction of kT of the truth, the bonded parameters within 1 %, and the force field the model
    writes is a CGPotential whose OpenMM pair energy is the predicted table."""
    import openmm

    from openmm_cgml.learn import PredictedPotential, train_potential_model
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.units import KB

    data = load_sweeps([_fake_sweep(tmp_path / "s", 80, ibi=True)])
    model, split, errors = train_potential_model(data, n_members=3, epochs=2000, seed=1)
    assert errors["test"]["table_rms_kT_median"] < 0.05
    assert model.metadata["pca_components"] <= 12
    model = PredictedPotential.load(model.save(tmp_path / "p.json"))
    params = {"bonds_k": 3.3e5, "vdw_epsilon_CH3": 0.85}
    tables, bonded = model.predict(params, 298.15)
    r = tables["A-A"][0]
    sampled = r > 0.2
    np.testing.assert_allclose(tables["A-A"][1][sampled], _table(3.3e5, 0.85, r)[sampled], atol=0.05 * KB * 298.15)
    assert bonded == pytest.approx([1000.0 * 1.1, 0.3 + 0.05 * 0.85], rel=0.01)  # k, r0 (sorted names)
    # the force field builds an OpenMM System; two beads in different molecules at 0.55 nm feel the predicted table
    potential = model.force_field(params, 298.15)
    topology = CGTopology(("A",) * 4, np.array([0, 0, 1, 1]), np.array([[0, 1], [2, 3]]), np.full(4, 50.0),
                          np.eye(3) * 3.0)
    system = potential.createSystem(topology)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    r0 = 0.3 + 0.05 * 0.85
    pos = np.array([[0, 0, 0], [r0, 0, 0], [0, 0.55, 0], [r0, 0.55, 0]], float)  # bonds at r0, pairs 0.55 apart
    context.setPositions(pos)
    energy = context.getState(getEnergy=True).getPotentialEnergy()._value
    u = tables["A-A"][1]
    expected = 2 * np.interp(0.55, r, u) + 2 * np.interp(np.hypot(r0, 0.55), r, u)  # bonds at r0: zero energy
    assert energy == pytest.approx(expected, abs=0.05)
    with pytest.raises(ConfigurationError, match="missing"):
        model.predict({"bonds_k": 3e5}, 298.15)


@pytest.mark.slow
def test_learn_from_a_real_tiny_sweep_runs_the_predicted_potential(tmp_path):
    """The whole path on a real (tiny) fast-family sweep: ``run_learn`` trains both models, runs a held-out sample's CG
    liquid with the predicted force field, and reports its RDF error beside the sample's own IBI one."""
    import _sweep_helpers as helpers

    from openmm_cgml.learn import LearnConfig, PredictedPotential, run_learn
    from openmm_cgml.sweep import SweepConfig, run_sweep

    sweep = SweepConfig.from_data(helpers.tiny_sweep(tmp_path / "sweep", sampling={"n_samples": 8, "seed": 5}))
    assert run_sweep(sweep, tmp_path / "sweep").failed == 0
    config = LearnConfig.from_data({"sweeps": ["sweep"], "output": "learned", "require_converged": False,
                                    "split": [0.5, 0.25, 0.25],
                                    "alpha": {"n_members": 2, "epochs": 300, "patience": 50},
                                    "potential": {"n_members": 2, "epochs": 300, "patience": 50,
                                                  "evaluate_samples": 1}, "dynamics": None})
    result = run_learn(config, base=tmp_path)
    sim = result.evaluation["potential"]["simulated"]
    assert sim["n"] == 1 and np.isfinite(sim["samples"][0]["rdf_error_predicted"]) and sim["ratio_median"] > 0
    potential = PredictedPotential.load(result.output / "predicted_potential.json")
    assert potential.keys and "Predicted IBI potential" in (result.output / "evaluation.md").read_text()
    # the dynamics evaluation's machinery (any force field; a tolerance that pairs everything)
    from openmm_cgml.learn import evaluate_dynamics_model, load_sweeps

    data = load_sweeps([tmp_path / "sweep"], require_converged=False)
    dyn = evaluate_dynamics_model(potential, data, [0], pair_tolerance=1e9)
    assert dyn["n"] == 1 and dyn["samples"][0]["D_CG"] > 0 and np.isfinite(dyn["relative_error_median"])


def test_the_dynamic_pairing_finds_matching_samples_and_the_network_learns_the_partners_potential(tmp_path):
    """Bag et al.'s pairing on a set with a known answer: sample i's partners are the samples with
    eps_j = sqrt(1.5) eps_i (their D_CG equals i's D_AA), and the dynamics-preserving network predicts for i the IBI
    table of eps = sqrt(1.5) eps_i."""
    from openmm_cgml.learn import dynamic_pairs, train_potential_model
    from openmm_cgml.units import KB

    data = load_sweeps([_fake_sweep(tmp_path / "s", 120, ibi=True, dynamics=True)])
    eps = data.frame["vdw_epsilon_CH3"].to_numpy()
    everyone = np.arange(len(eps))
    pairs = dynamic_pairs(data, everyone, everyone)
    assert len(pairs) > 30
    ratio = np.array([eps[j] / eps[i] for i, j in pairs])
    assert np.all(np.abs(ratio - np.sqrt(1.5)) < 0.03)
    inside = [i for i in everyone if eps[i] * np.sqrt(1.5) < eps.max() - 0.01]
    assert all(any(p[0] == i for p in pairs) for i in inside)  # every sample the range allows has a partner
    model, split, info = train_potential_model(data, kind="dynamics", n_members=3, epochs=2000, seed=1)
    assert info["pairs_train"] > 10 and model.metadata["kind"] == "dynamics"
    kt = KB * 298.15
    for i in [i for i in split["test"] if i in inside]:
        tables, _ = model.predict({"bonds_k": data.frame["bonds_k"].iloc[i], "vdw_epsilon_CH3": eps[i]}, 298.15)
        r, u = tables["A-A"]
        target = _table(3e5, eps[i] * np.sqrt(1.5), r)
        sampled = r > 0.2
        assert np.sqrt(np.mean(((u - target)[sampled] / kt) ** 2)) < 0.1
    data.frame["D_CG"] = 1.0  # no CG model as slow as any AA one: nothing to pair
    with pytest.raises(DatasetError, match="too few dynamic pairs"):
        train_potential_model(data, kind="dynamics")


def test_cross_validation_holds_every_sample_out_exactly_once(tmp_path):
    from openmm_cgml.learn import cross_validation_folds

    data = load_sweeps([_fake_sweep(tmp_path / "s", 22)])  # 20 usable
    folds = cross_validation_folds(data, 4, seed=1)
    assert len(folds) == 4
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(20))
    for f in folds:
        train, val, test = (set(f[k].tolist()) for k in ("train", "validation", "test"))
        assert not (train & val or train & test or val & test) and len(train) >= 2 and val
        assert len(train | val | test) == 20
    loo = cross_validation_folds(data, "loo")
    assert len(loo) == 20 and all(f["test"].size == 1 for f in loo)
    assert [f["test"].tolist() for f in cross_validation_folds(data, 4, seed=1)] == [f["test"].tolist() for f in folds]
    with pytest.raises(ConfigurationError, match="folds >= 2"):
        cross_validation_folds(data, 1)
    with pytest.raises(DatasetError, match="at least 21"):
        cross_validation_folds(data, 21)


def test_cgml_learn_cross_validates_a_small_sweep(tmp_path):
    """A sweep too small for a held-out test set (14 samples, 12 usable): with ``cross_validation: loo`` every sample
    is predicted by models that never saw it.  Out of fold, alpha (a known power law, 3 % noise) beats a constant
    and the IBI tables (known functions of the parameters) are predicted well within a kT, better than the mean
    table; the dynamics-preserving potential, with no sample's D_CG near another's D_AA, is reported as impossible
    while the alpha model is still written."""
    from openmm_cgml.cli import main
    from openmm_cgml.units import KB

    sweep = _fake_sweep(tmp_path / "sweep", 14, ibi=True, dynamics=True)
    index = sweep / "index.csv"
    import pandas as pd

    frame = pd.read_csv(index)
    frame["D_CG"] = 10 * frame["D_AA"]  # alpha ~ 10: no CG model as slow as any AA liquid
    frame.to_csv(index, index=False)
    net = {"n_members": 3, "epochs": 1500, "patience": 150}
    (tmp_path / "learn.yaml").write_text(yaml.safe_dump({
        "sweeps": ["sweep"], "output": "out", "seed": 1, "cross_validation": "loo", "alpha": net,
        "potential": {**net, "evaluate_samples": 0}, "dynamics": {**net, "evaluate_samples": 0}}))
    assert main(["learn", str(tmp_path / "learn.yaml")]) == 0
    out = tmp_path / "out"
    evaluation = json.loads((out / "evaluation.json").read_text())
    cv = evaluation["cross_validation"]
    assert cv["folds"] == 12 and cv["alpha"]["n"] == 12
    assert sorted(cv["alpha"]["sample_ids"]) == sorted(load_sweeps([sweep]).frame["sample_id"])
    assert cv["alpha"]["median_relative_error"] < cv["alpha"]["constant_baseline_median_relative_error"]
    data = load_sweeps([sweep])
    from openmm_cgml.learn import load_ibi_targets

    tables = load_ibi_targets(data)["tables"]
    kt = KB * 298.15
    spread = np.median([np.sqrt(np.mean((((t - tables.mean(0)) / kt)[t < 5 * kt]) ** 2)) for t in tables])
    assert cv["potential"]["table_rms_kT_median"] < 0.5 * spread
    assert cv["dynamics"]["folds_without_pairs"] == 12 and cv["dynamics"]["simulated"]["n"] == 0
    assert "too few dynamic pairs" in evaluation["dynamics"]["error"]
    assert (out / "alpha_model.json").exists() and not (out / "dynamics_potential.json").exists()
    md = (out / "evaluation.md").read_text()
    assert "# Cross-validation (12 folds)" in md and "None: too few dynamic pairs" in md


# ---------------------------------------------------------------------------------------------- across molecules
_MOLECULES = {  # united-atom molecules of the cross-molecule tests: name -> (sites, bonds, density g/cm**3)
    "BUT": (["CH3", "CH2", "CH2", "CH3"], [[0, 1], [1, 2], [2, 3]], 0.58),
    "IPE": (["CH3", "CH", "CH3", "CH2", "CH3"], [[0, 1], [1, 2], [1, 3], [3, 4]], 0.62),
    "NPE": (["CH3", "CH2", "CH2", "CH2", "CH3"], [[0, 1], [1, 2], [2, 3], [3, 4]], 0.621),
    "HEX": (["CH3", "CH2", "CH2", "CH2", "CH2", "CH3"], [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], 0.655),
    "DMB": (["CH3", "CH", "CH", "CH3", "CH3", "CH3"], [[0, 1], [1, 2], [2, 3], [1, 4], [2, 5]], 0.657),
}


def _alpha_of(d: dict) -> float:
    """A known alpha of the descriptors (molecule size, branching, bond stiffness, mean epsilon)."""
    return 2.0 * (d["bond_k"] / 3e5) ** 0.3 * (d["epsilon"] / 0.6) ** -1.5 * (d["n_sites"] / 5) ** 0.5 * \
        (1 + 0.5 * d["branching"])


def _molecule_sweep(directory: Path, name: str, n: int, *, seed: int, noise: float = 0.03, ibi: bool = False) -> Path:
    """A sweep directory of the molecule ``name`` whose alpha is :func:`_alpha_of` its descriptors (and, with
    ``ibi``, whose IBI pair table is :func:`_table` of its bond k and mean epsilon, under its own bead type)."""
    import pandas as pd

    from openmm_cgml.learn import sample_descriptors
    from openmm_cgml.sweep import generate_samples

    sites, bonds, density = _MOLECULES[name]
    config = _fake_definition(directory, n, seed, name=name, molecule={"name": name, "sites": sites, "bonds": bonds,
                                                                        "density": f"{density} g/cm**3"})
    rng = np.random.default_rng(seed)
    rows = []
    for s in generate_samples(config):
        d = sample_descriptors(config, s.parameters)
        truth = _alpha_of(d)
        rows.append({"sample_id": s.sample_id, "index": s.index, "status": "done", "temperature_K": s.temperature,
                     "seed": s.seed, **s.parameters, "alpha": truth * (1 + noise * rng.standard_normal()),
                     "alpha_err": truth * noise, "alpha_converged": True})
        if ibi:
            _write_ibi(directory / "samples" / s.sample_id / "work", d["bond_k"], d["epsilon"], bead=f"{name}_A")
    pd.DataFrame(rows).to_csv(directory / "index.csv", index=False)
    return directory


def test_united_atom_descriptors_are_statistics_of_the_assigned_parameters():
    from openmm_cgml.learn import sample_descriptors, united_atom_descriptors
    from openmm_cgml.sweep import SweepConfig
    from openmm_cgml.sweep.definition import UA_SITES

    sites, bonds, density = _MOLECULES["HEX"]
    hexane = united_atom_descriptors({"name": "HEX", "sites": sites, "bonds": bonds, "density": f"{density} g/cm**3"})
    assert hexane["n_sites"] == 6 and hexane["branching"] == 0 and hexane["density"] == pytest.approx(0.655)
    assert hexane["epsilon"] == pytest.approx((2 * UA_SITES["CH3"][1] + 4 * UA_SITES["CH2"][1]) / 6)
    assert hexane["sigma"] == pytest.approx((2 * UA_SITES["CH3"][2] + 4 * UA_SITES["CH2"][2]) / 6)
    assert hexane["bond_k"] == 250000.0 and hexane["angle"] == 112.0 and hexane["torsion_k"] == 4.0
    sites, bonds, _ = _MOLECULES["DMB"]
    assert united_atom_descriptors({"sites": sites, "bonds": bonds})["branching"] == pytest.approx(2 / 6)
    ethane = united_atom_descriptors({"sites": ["CH3", "CH3"], "bonds": [[0, 1]]})
    assert ethane["angle_k"] == 0 and ethane["torsion_k"] == 0 and ethane["bond_k"] == 250000.0  # no such terms
    # a sample's descriptors: its parameter values written into the molecule's force field
    config = SweepConfig.from_data({"family": "united-atom", "molecule": {"count": 27, "cutoff": "0.7 nm"},
                                    "parameters": [{"handler": "Bonds", "attribute": "k", "factor": [0.5, 2.0]},
                                                   {"handler": "vdW", "site": "CH3", "attribute": "epsilon",
                                                    "factor": [0.8, 1.2]}]})
    d = sample_descriptors(config, {"bonds_k": 3.0e5, "vdw_epsilon_CH3": 1.0})
    assert d["bond_k"] == 3.0e5 and d["branching"] == pytest.approx(0.2)
    assert d["epsilon"] == pytest.approx((3 * 1.0 + UA_SITES["CH"][1] + UA_SITES["CH2"][1]) / 5)


def test_openff_descriptors_read_the_parameters_the_force_field_assigns():
    """2,3,4-trimethylpentane with Sage: eight carbons, three branch points, every C-C bond the [#6X4:1]-[#6X4:2]
    one; a sample's factor on that bond's k shows in the descriptor and leaves the cached force field as it was."""
    pytest.importorskip("openff.toolkit")
    from openmm_cgml.learn import openff_descriptors, sample_descriptors
    from openmm_cgml.reference.liquid import forcefield_parameter_value, load_forcefield
    from openmm_cgml.sweep import SweepConfig

    smirks = "[#6X4:1]-[#6X4:2]"
    ff = load_forcefield("openff-2.2.0")
    k = forcefield_parameter_value(ff, "Bonds", smirks, "k", "kJ/mol/nm**2")
    d = openff_descriptors("CC(C)C(C)C(C)C", ff, 0.7)
    assert d["n_sites"] == 8 and d["branching"] == pytest.approx(3 / 8)
    assert d["bond_k"] == pytest.approx(k) and 105 < d["angle"] < 115 and d["torsion_k"] > 0
    assert 0.3 < d["sigma"] < 0.4 and d["epsilon"] > 0
    config = SweepConfig.from_data({"family": "openff", "molecule": {"smiles": "CC(C)C(C)C(C)C"},
                                    "parameters": [{"handler": "Bonds", "smirks": smirks, "attribute": "k",
                                                    "factor": [0.7, 1.3]}]})
    cache = {"openff-2.2.0": ff}
    column = config.parameters[0].column()
    assert sample_descriptors(config, {column: 1.2 * k}, forcefield_cache=cache)["bond_k"] == pytest.approx(1.2 * k)
    assert forcefield_parameter_value(ff, "Bonds", smirks, "k", "kJ/mol/nm**2") == pytest.approx(k)


def test_descriptor_models_learn_across_molecules_and_predict_a_held_out_one(tmp_path):
    """Sweeps of four molecules whose alpha is a known function of their descriptors, a fifth held out of
    training: its alpha is predicted within 10 % (median), far better than a constant, inside the intervals;
    the predicted potential names its tables after the molecule it is built for."""
    from openmm_cgml.learn import LearnConfig, PredictedPotential, load_sweeps, run_learn

    for i, name in enumerate(_MOLECULES):
        _molecule_sweep(tmp_path / name, name, 40, seed=10 + i, ibi=True)
    config = LearnConfig.from_data({"sweeps": list(_MOLECULES), "output": "out", "features": "descriptor",
                                    "holdout": ["NPE"], "seed": 1, "dynamics": None,
                                    "alpha": {"n_members": 4, "epochs": 1500},
                                    "potential": {"n_members": 3, "epochs": 1500, "evaluate_samples": 0}})
    result = run_learn(config, base=tmp_path)
    ev = result.evaluation
    held = ev["holdout"]
    assert held["n"] == 40 and ev["train"]["n"] + ev["validation"]["n"] + ev["test"]["n"] == 160
    assert held["median_relative_error"] < 0.10
    assert held["median_relative_error"] < 0.5 * ev["constant_baseline_holdout"]["median_relative_error"]
    assert held["within_95"] >= 0.7
    assert "| holdout |" in (result.output / "evaluation.md").read_text()
    # the held-out molecule's tables: known functions of its bond k and mean epsilon, predicted under its own name
    potential = PredictedPotential.load(result.output / "predicted_potential.json")
    assert potential.generic and potential.keys == ["*_A-*_A"]
    assert ev["potential"]["tables"]["holdout"]["table_rms_kT_median"] < 0.15
    sites, bonds, density = _MOLECULES["NPE"]
    block = {"name": "NPE", "sites": sites, "bonds": bonds, "density": f"{density} g/cm**3"}
    ff = potential.force_field({"bond_k": 3e5, "lj": {"CH3": [0.8, 0.375]}}, 298.15, molecule=block)
    pair = ff.terms[0]
    assert list(pair.tables) == [("NPE_A", "NPE_A")] or list(pair.tables) == ["NPE_A-NPE_A"]
    with pytest.raises(ConfigurationError, match="molecule="):
        potential.force_field(None, 298.15)
    # the alpha model evaluates a molecule's descriptors itself
    from openmm_cgml.dynamics import load_alpha_model
    from openmm_cgml.learn import united_atom_descriptors

    model = load_alpha_model(result.output / "alpha_model.json")
    at = model.with_parameters({"bond_k": 3e5}, molecule=block)
    assert at.alpha(298.15) == pytest.approx(_alpha_of(united_atom_descriptors(block, {"bond_k": 3e5})), rel=0.1)
    again = PredictedAlpha(**json.loads(json.dumps(at.to_data())))
    assert again.alpha(298.15) == at.alpha(298.15)
    with pytest.raises(ConfigurationError, match="molecule="):
        model.with_parameters(forcefield="openff-2.2.0")
    with pytest.raises(ConfigurationError, match="holdout"):
        load_sweeps([tmp_path / "BUT"], holdout=["BUT"])
    with pytest.raises(ConfigurationError, match="no sweep simulates"):
        load_sweeps([tmp_path / "BUT", tmp_path / "HEX"], features="descriptor", holdout=["XYZ"])
    with pytest.raises(ConfigurationError, match="no molecule to train"):
        load_sweeps([tmp_path / "BUT"], features="descriptor", holdout=["BUT"])
    with pytest.raises(ConfigurationError, match="differ"):
        load_sweeps([tmp_path / "BUT", tmp_path / "HEX"])  # parameter features: one molecule only


@pytest.mark.slow
def test_a_descriptor_potential_runs_a_held_out_molecules_real_liquid(tmp_path):
    """Real tiny sweeps of isopentane and n-pentane; learning on isopentane only, the predicted potential is built
    for n-pentane's beads (its own residue name) and runs its liquid, with the RDF error beside its own IBI's."""
    import _sweep_helpers as helpers

    from openmm_cgml.learn import LearnConfig, run_learn
    from openmm_cgml.sweep import SweepConfig, run_sweep

    sites, bonds, density = _MOLECULES["NPE"]
    for name, n, molecule in (("ipe", 6, {}), ("npe", 2, {"name": "NPE", "sites": sites, "bonds": bonds,
                                                          "density": f"{density} g/cm**3"})):
        sweep = SweepConfig.from_data(helpers.tiny_sweep(tmp_path / name, molecule=molecule,
                                                         sampling={"n_samples": n, "seed": 5}))
        assert run_sweep(sweep, tmp_path / name).failed == 0
    config = LearnConfig.from_data({"sweeps": ["ipe", "npe"], "output": "learned", "require_converged": False,
                                    "features": "descriptor", "holdout": ["NPE"], "split": [0.5, 0.25, 0.25],
                                    "alpha": {"n_members": 2, "epochs": 300, "patience": 50},
                                    "potential": {"n_members": 2, "epochs": 300, "patience": 50,
                                                  "evaluate_samples": 1}, "dynamics": None})
    result = run_learn(config, base=tmp_path)
    held = result.evaluation["potential"]["simulated_holdout"]
    assert held["n"] == 1 and held["samples"][0]["sample_id"].startswith("s0")
    assert np.isfinite(held["samples"][0]["rdf_error_predicted"]) and held["ratio_median"] > 0
    assert result.evaluation["holdout"]["n"] == 2
    assert "held-out samples" in (result.output / "evaluation.md").read_text()


def test_the_cross_molecule_examples_validate():
    """examples/transfer/*.yaml are sweeps of four other alkanes with isopentane's varied parameters, and
    examples/learn_transfer.yaml learns across all five with one held out."""
    from openmm_cgml.learn import LearnConfig
    from openmm_cgml.sweep import SweepConfig

    base = SweepConfig.from_data(yaml.safe_load((ROOT / "examples" / "sweep.yaml").read_text()))
    names = set()
    for path in sorted((ROOT / "examples" / "transfer").glob("*.yaml")):
        config = SweepConfig.from_data(yaml.safe_load(path.read_text()), source=str(path))
        assert [p.column() for p in config.parameters] == [p.column() for p in base.parameters]
        assert config.pipeline.to_data() == base.pipeline.to_data()
        names.add(config.molecule_model().name)
    learn = LearnConfig.from_data(yaml.safe_load((ROOT / "examples" / "learn_transfer.yaml").read_text()))
    assert len(names) == 4 and set(learn.holdout) < names and learn.features == "descriptor"
    assert len(learn.sweeps) == 5

"""The temperature study's configuration: held-out temperatures inside and beyond the range, the middle temperature,
the plan of leave-one-out models, and bad input refused before any work."""

from pathlib import Path

import pytest
import yaml

from openmm_cgml.config import load_config
from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.reference.run import ReferenceConfig
from openmm_cgml.sweep.temperature import TemperatureStudyConfig, _reference_settings, study_plan

ROOT = Path(__file__).resolve().parents[1]


def _config(**changes):
    data = {"components": [{"smiles": "CCO", "count": 10}], "temperatures": ["260 K", "280 K", "300 K", "320 K"],
            "held_out": {"interpolation": "280 K", "extrapolation": "320 K"}, "density": "0.8 g/cm**3"}
    data.update(changes)
    return TemperatureStudyConfig.from_data(data)


def test_plan_and_middle_temperature():
    c = _config()
    assert c.middle_temperature == 260.0  # the lower middle of 260 and 300, the temperatures no model leaves out
    assert study_plan(c) == {"all": [260.0, 280.0, 300.0, 320.0], "loto_280K": [260.0, 300.0, 320.0],
                             "loto_320K": [260.0, 280.0, 300.0]}
    c = _config(temperatures=["250 K", "275 K", "300 K", "325 K", "350 K"],
                held_out={"interpolation": "275 K", "extrapolation": "350 K"})
    assert c.middle_temperature == 300.0
    assert list(study_plan(_config(held_out={"interpolation": "300 K"}))) == ["all", "loto_300K"]


@pytest.mark.parametrize("changes, message", [
    ({"temperatures": ["280 K", "300 K"]}, "at least 3"),
    ({"temperatures": ["280 K", "280 K", "300 K", "320 K"]}, "distinct"),
    ({"held_out": {"interpolation": "290 K"}}, "not one of the temperatures"),
    ({"held_out": {"interpolation": "260 K"}}, "inside the range"),
    ({"held_out": {"interpolation": "280 K", "extrapolation": "300 K"}}, "beyond the range"),
    ({"held_out": {"interpolation": "280 K", "extrapolation": "280 K"}}, "must differ"),
    ({"held_out": {"interpolation": "280 K", "extrapolation": "400 K"}}, "not one of the temperatures"),
    ({"temperatures": ["-5 K", "280 K", "300 K"]}, "temperature"),
    ({"density_mode": "nve"}, "density_mode"),
])
def test_bad_configurations(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        _config(**changes)


def test_the_examples_parse():
    for path in ("examples/temperature/tmp.yaml", "examples/temperature/tmp_two_cores.yaml",
                 "examples/ionic_liquid/bmim_bf4.yaml", "examples/ionic_liquid/bmim_bf4_gpu.yaml",
                 "examples/ionic_liquid/bmim_pf6.yaml", "examples/ionic_liquid/bmim_pf6_gpu.yaml"):
        c = load_config(ROOT / path, TemperatureStudyConfig)
        assert len(c.temperatures) >= 3 and c.held_out.extrapolation is not None, path
        data = yaml.safe_load((ROOT / path).read_text())
        assert data["output"].startswith("runs/"), path
        for t in c.sorted_temperatures:  # every AA reference's settings are valid before any work starts
            ReferenceConfig.from_data(_reference_settings(c, t))
    pf6 = load_config(ROOT / "examples/ionic_liquid/bmim_pf6_gpu.yaml", TemperatureStudyConfig)
    thermostat = ReferenceConfig.from_data(_reference_settings(pf6, 450.0)).thermostat
    assert (thermostat.kind, thermostat.interval) == ("bussi", 10)


def test_a_failed_run_is_reported_and_its_goal_not_measured():
    """A model that blew up at a temperature has no RDF error there: its goal is 'not measured' (not met or
    failed silently), and the summary lists the failure."""
    from openmm_cgml.sweep.temperature import _goals, summary_markdown

    c = _config()
    failed = {"source": "models/loto_280K/model.cgml", "error": "SimulationError: NaN at 2.5 fs", "rdf_error": None,
              "D": {}}
    runs = {280.0: {"ibi": {"rdf_error": 0.02, "D": {}}, "ibi_mid": {"rdf_error": 0.05, "D": {}},
                    "loto_280K": failed}}
    goals = _goals(c, runs, {"activation_energy": {}}, {})
    assert goals[0]["met"] is None and goals[0]["model"] is None and goals[0]["ibi_own"] == 0.02
    summary = {"system": "10 x CCO", "temperatures_K": [280.0], "held_out_K": {"interpolation": 280.0,
               "extrapolation": None}, "middle_temperature_K": 260.0, "density_mode": "npt", "goals": goals,
               "runs": {"280": runs[280.0]}, "arrhenius": {"activation_energy": {}}, "leave_one_out": {},
               "costs": {"totals": {}}}
    md = summary_markdown(summary)
    assert "## Failed runs" in md and "loto_280K at 280 K (SimulationError: NaN at 2.5 fs)" in md
    assert "**not measured**" in md


@pytest.mark.parametrize("changes, message", [
    ({"viscosity": {"aa_production": "0.5 ps"}}, r"viscosity.aa_production \(0.5 ps\) must be at least 400 steps"),
    ({"viscosity": {"aa_production": "1 ps"}, "reference": {"timestep": "4 fs"}}, "viscosity.aa_production"),
    ({"viscosity": {"cg_production": "2 ps"}, "cg_timestep": "10 fs"}, r"viscosity.cg_production \(2 ps\)"),
    ({"viscosity": {"aa_accelerations": []}}, "aa_accelerations"),
])
def test_bad_viscosity_settings(changes, message):
    with pytest.raises(ConfigurationError, match=message):
        _config(**changes)


def test_yeh_hummer_records_against_the_formula():
    """D_box + k_B T xi / (6 pi eta L) in nm^2/ps, its error from eta's in quadrature; the box's D kept; no viscosity
    or a non-positive estimate leaves D alone and says so."""
    import math

    import numpy as np

    from openmm_cgml.sweep.temperature import yeh_hummer_records

    records = {"TMP": {"converged": True, "D_nm2_per_ps": 1.0e-3, "D_err_nm2_per_ps": 1.0e-4},
               "BF4": {"converged": False, "reason": "too short"}}
    eta = {"viscosity_mPa_s": 0.5, "viscosity_err_mPa_s": 0.05, "linear": True}
    box = np.tile(np.diag([3.0, 3.0, 3.0]), (4, 1, 1))
    out = yeh_hummer_records(records, 300.0, eta, box)
    expected = 1.380649e-23 * 300.0 * 2.837297 / (6 * math.pi * 0.5e-3 * 3.0e-9) * 1e6  # m^2/s -> nm^2/ps
    assert out["TMP"]["yeh_hummer_nm2_per_ps"] == pytest.approx(expected, rel=1e-6)
    assert out["TMP"]["D_nm2_per_ps"] == pytest.approx(1.0e-3 + expected, rel=1e-9)
    assert out["TMP"]["D_box_nm2_per_ps"] == 1.0e-3
    assert out["TMP"]["D_err_nm2_per_ps"] == pytest.approx(math.hypot(1.0e-4, 0.1 * expected), rel=1e-9)
    assert out["TMP"]["finite_size"].startswith("Yeh-Hummer corrected (eta 0.5 ± 0.05 mPa s)")
    assert "D_nm2_per_ps" not in out["BF4"] and out["BF4"]["reason"] == "too short"
    assert records["TMP"]["D_nm2_per_ps"] == 1.0e-3  # the input is not modified
    plain = yeh_hummer_records(records, 300.0, None, box)
    assert plain["TMP"]["D_nm2_per_ps"] == 1.0e-3 and plain["TMP"]["finite_size"].startswith("not corrected")
    noisy = yeh_hummer_records(records, 300.0, {"viscosity_mPa_s": -0.1, "viscosity_err_mPa_s": 0.3}, box)
    assert noisy["TMP"]["D_nm2_per_ps"] == 1.0e-3 and "not positive" in noisy["TMP"]["finite_size"]


def test_a_failed_viscosity_leaves_d_uncorrected_and_is_retried(tmp_path, monkeypatch):
    """A viscosity run that blows up is said ({"error": ...}), not kept (a rerun retries it) and not costed; that
    liquid's D stay the box's, with the reason."""
    from openmm_cgml.exceptions import SimulationError
    from openmm_cgml.sweep import pipeline
    from openmm_cgml.sweep import temperature as study

    def blows_up(path, *args, **kwargs):
        raise SimulationError("NaN in the perturbed run (injected)")

    monkeypatch.setattr(pipeline, "liquid_viscosity", blows_up)
    c = _config(viscosity={"cg_production": "20 ps"}, output=str(tmp_path))
    costs = study._Costs(tmp_path / "costs.json")

    class Run:
        metadata = {"timestep_ps": 0.01}

    record = study._viscosity(c, tmp_path, "all", 300.0, costs, lambda: None, Run(), aa=False)
    assert record == {"error": "SimulationError: NaN in the perturbed run (injected)"}
    assert not (tmp_path / "viscosity_all.json").exists() and costs.data == {}
    out = study.yeh_hummer_records({"TMP": {"D_nm2_per_ps": 1e-3}}, 300.0, record, [3.0, 3.0, 3.0])
    assert out["TMP"]["D_nm2_per_ps"] == 1e-3
    assert out["TMP"]["finite_size"] == ("not corrected: the viscosity run failed (SimulationError: NaN in the "
                                         "perturbed run (injected))")


def test_bad_reference_overrides_are_refused_when_the_study_loads():
    """A wrong key or value among the ``reference`` overrides stops the study before any AA reference runs."""
    with pytest.raises(ConfigurationError, match=r"(?s)AA reference at \d+ K .*thermostat.interval: Input should be greater than or equal to 1"):
        _config(reference={"thermostat": {"kind": "bussi", "interval": 0}})
    with pytest.raises(ConfigurationError, match=r"(?s)AA reference at .*timestepp"):
        _config(reference={"timestepp": "2 fs"})


def test_refinement_settings_are_checked_when_the_study_loads():
    """``refine``: its keys override the refinement's IBI settings and are checked at once; what the study sets for
    each refinement (its dataset, folder, temperature, base model) is refused."""
    from openmm_cgml.sweep.temperature import _refine_settings

    c = _config(refine={"max_iterations": 4, "production_steps": 2000}, ibi={"cutoff": "0.9 nm", "bonded": "table"})
    settings = {**_refine_settings(c, "cg.h5", "out", 280.0, 1.1, "m.cgml"), **c.refine}
    assert settings["base_model"] == "m.cgml" and settings["initial"] == "zero" and settings["bonded"] == "none"
    assert settings["cutoff"] == "0.9 nm" and settings["max_iterations"] == 4 and settings["temperature"].startswith("280")
    with pytest.raises(ConfigurationError, match="max_iteration"):
        _config(refine={"max_iteration": 4})
    with pytest.raises(ConfigurationError, match="damping"):
        _config(refine={"damping": -1})
    with pytest.raises(ConfigurationError, match=r"\['base_model', 'temperature'\] are set by the study"):
        _config(refine={"base_model": "x.cgml", "temperature": "300 K"})
    assert _config().refine is None


def _square(x):
    if x == 3:
        raise ValueError("three is refused")
    return x * x


@pytest.mark.parametrize("execution", [None, {"cluster": "local", "workers": 2, "processes": False}])
def test_the_executor_runs_every_job_and_reports_each_as_it_ends(execution):
    """In sequence or as Dask tasks: every job runs although one fails, each result (or its exception) is handed to
    ``on_result`` as it ends, the failure is raised afterwards, and no cluster starts for a step without jobs."""
    from openmm_cgml.sweep.temperature import _Executor, _raise_failures

    c = _config(**({} if execution is None else {"execution": execution}))
    seen = []
    with _Executor(c) as executor:
        assert executor.run({}, "nothing", False) == {} and executor.client is None
        results = executor.run({k: (_square, (k,)) for k in range(5)}, "squares", False,
                               on_result=lambda k, r: seen.append(k))
        assert (executor.client is not None) == (execution is not None)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert {k: v for k, v in results.items() if k != 3} == {0: 0, 1: 1, 2: 4, 4: 16}
    assert isinstance(results[3], ValueError)
    with pytest.raises(ValueError, match="three is refused"):
        _raise_failures(results, "squares")
    assert _Executor(c).describe() == ("in sequence, in one process" if execution is None else
                                       "Dask tasks on a local cluster of 2 worker threads of 1 thread")

"""``cgml temperature`` at a tiny size on each example's configuration: AA references at three temperatures, one
mapping, IBI per temperature, temperature-conditioned neural models left one temperature out, every model at every
temperature, the Arrhenius study; then a rerun that resumes and redoes nothing, and a failed temperature that loses
no other."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from openmm_cgml.testing import requires_openff

pytestmark = [requires_openff, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]

#: every example shrunk alike: three temperatures (the middle one held out inside the range, the top one beyond it),
#: a few ps everywhere, Gasteiger charges for whatever the example charges with AM1-BCC
TINY = dict(temperatures=["280 K", "310 K", "340 K"], held_out={"interpolation": "310 K", "extrapolation": "340 K"},
            charge_method="gasteiger", cg_duration_ps=2.0, cg_equilibration_steps=100, cg_timestep="4 fs",
            platform="CPU",
            reference={"nvt": "1 ps", "npt": "2 ps", "production": "4 ps", "report_interval": "0.1 ps",
                       "checkpoint_interval": "2 ps", "cutoff": "0.7 nm", "threads": 1},
            ibi={"max_iterations": 1, "equilibration_steps": 100, "production_steps": 400, "sample_interval": 20,
                 "cutoff": "0.7 nm"},
            training={"epochs": 1}, model={"inter_cutoff": "0.65 nm", "hidden": 16})


def tiny_config(example: str, out: Path, **changes) -> dict:
    data = yaml.safe_load((ROOT / "examples" / example).read_text())
    data.update(output=str(out), **TINY)
    data.update(changes)
    return data


def _run(config: dict, tmp_path: Path, name: str, timeout: int = 1500):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "openmm_cgml.cli", "temperature", str(path), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path), cmd


def _check_summary(out: Path, species: set[str], method: str, refined: bool = False) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    temps = ["280", "310", "340"]
    assert summary["temperatures_K"] == [280.0, 310.0, 340.0] and summary["middle_temperature_K"] == 280.0
    assert set(summary["models"]) == {"all", "loto_310K", "loto_340K"}
    assert summary["models"]["loto_310K"]["trained_at_K"] == [280.0, 340.0]
    # one mapping for all: every reference mapped with the middle temperature's mapping.json
    assert (out / "mapping.json").exists()
    methods = {t: yaml.safe_load((out / f"T{t}" / "map.yaml").read_text())["mapping"]["method"] for t in temps}
    assert methods == {"280": method, "310": "file", "340": "file"}
    for t in temps:
        runs = summary["runs"][t]
        neural = {"all", "loto_310K", "loto_340K"}
        assert set(runs) == {"ibi", "ibi_mid", *neural, *({f"{m}_refined" for m in neural} if refined else ())}, t
        for name, rec in runs.items():
            assert rec["rdf_error"] is not None and np.isfinite(rec["rdf_error"]), (t, name)
            assert set(rec["D"]) == species, (t, name)
        # the middle temperature's IBI is that temperature's own; elsewhere it ran on its own
        assert (out / f"T{t}" / "compare_ibi_mid").exists() == (t != "280")
    # the neural models are temperature-conditioned: their bundles know where they were trained
    from openmm_cgml.forces.neural import trained_temperatures
    from openmm_cgml.models import load_bundle

    assert trained_temperatures(load_bundle(out / "models" / "loto_340K" / "model.cgml")) == [280.0, 310.0]
    # goals reported, met or not, with their figures; a few ps cannot give a converged D: flagged, not hidden
    goals = summary["goals"]
    assert any("RDF error" in g["goal"] for g in goals)
    assert any("D_AA" in g["goal"] for g in goals)
    for g in goals:
        assert g["met"] in (True, False, None)
    assert (out / "arrhenius.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # alpha(T) of each neural model and species, as the reporter reads it (fitted where every D is positive)
    from openmm_cgml.dynamics.alpha import load_alpha_model

    for key, path in summary["alpha_models"].items():
        model = load_alpha_model(path)
        assert model.alpha(f"{summary['temperatures_K'][0]} K") > 0, key
        assert model.temperature_range[0] >= 280.0 - 1e-9, key
    md = (out / "summary.md").read_text()
    assert "## Goals" in md and "Activation energies" in md and "## Cost" in md
    totals = summary["costs"]["totals"]
    assert {"AA", "mapping", "IBI", "training", "CG"} <= set(totals)
    return summary


def test_temperature_study_tmp_tiny(tmp_path):
    out = tmp_path / "tmp"
    # with viscosities: every D Yeh-Hummer corrected with its own liquid's (one strong amplitude, 400 steps)
    viscosity = {"aa_accelerations": ["0.5 nm/ps**2"], "cg_accelerations": ["0.3 nm/ps**2"], "equilibration": "0.4 ps",
                 "aa_production": "0.8 ps", "cg_production": "1.6 ps"}
    # every step's independent jobs (references, IBI per temperature, training, every model's runs) as tasks on two
    # one-thread worker processes (the ionic-liquid test runs them in sequence)
    config = tiny_config("temperature/tmp.yaml", out, components=[{"smiles": "CC(C)C(C)C(C)C", "count": 30,
                                                                    "name": "TMP"}], density="0.5 g/cm**3",
                         viscosity=viscosity, execution={"cluster": "local", "workers": 2, "processes": True})
    proc, cmd = _run(config, tmp_path, "tmp")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = _check_summary(out, {"TMP"}, "automatic")
    assert summary["execution"] == "Dask tasks on a local cluster of 2 worker processes of 1 thread"
    assert "Jobs ran as Dask tasks" in (out / "summary.md").read_text()
    _check_finite_size(out, summary)
    costs = json.loads((out / "costs.json").read_text())
    # a rerun finds every output and redoes nothing
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "costs.json").read_text()) == costs
    assert json.loads((out / "summary.json").read_text())["runs"] == summary["runs"]
    # the benchmark: both arms at each temperature timed round-robin, the study's cost from costs.json
    env = {**os.environ, "CGML_BENCH_RESULTS": str(tmp_path / "results")}
    bench = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_temperature.py"), "--study-output",
                            str(out), "--rounds", "1", "--aa-steps", "5", "--cg-steps", "10"], capture_output=True,
                           text=True, timeout=600, env=env)
    assert bench.returncode == 0, bench.stderr[-3000:]
    figures = json.loads((tmp_path / "results" / "bench_temperature_tmp.json").read_text())["figures"]
    assert set(figures["speedup_per_ns"]) == {"280", "310", "340"}
    assert set(figures["speedup_per_ns"]["310"]) == {"ibi", "ibi_mid", "all", "loto_310K", "loto_340K"}
    assert all(v > 0 for per in figures["speedup_per_ns"].values() for v in per.values())
    assert figures["study_cost_h"]["AA"]["wall_h"] > 0


def _check_finite_size(out: Path, summary: dict) -> None:
    """Every liquid at every temperature has its viscosity, and every D is its box's D plus the Yeh-Hummer term of
    that liquid's viscosity and its run's box (or, where the estimate is not positive, the box's D, said)."""
    from openmm_cgml.analysis.msd import yeh_hummer_correction
    from openmm_cgml.dataset import open_dataset

    assert summary["finite_size"].startswith("D, activation energies and alpha(T) Yeh-Hummer corrected")
    assert "viscosity" in summary["costs"]["totals"]
    corrected = 0
    for t, runs in summary["runs"].items():
        aa = summary["aa_viscosity"][t]
        assert np.isfinite(aa["viscosity_mPa_s"]) and aa["viscosity_err_mPa_s"] >= 0
        for name, rec in runs.items():
            if name == "ibi_mid" and float(t) == summary["middle_temperature_K"]:
                continue  # there it is the temperature's own IBI
            eta, run = rec["viscosity"], open_dataset(out / f"T{t}" / f"{name}_run.h5")
            assert np.isfinite(eta["viscosity_mPa_s"]), (t, name)
            d = rec["D"]["TMP"]
            if eta["viscosity_mPa_s"] > 0 and "D_box_nm2_per_ps" in d:
                term = yeh_hummer_correction(float(t), eta["viscosity_mPa_s"] * 1e-3, run.box)
                assert d["D_nm2_per_ps"] == pytest.approx(d["D_box_nm2_per_ps"] + term, rel=1e-9), (t, name)
                corrected += 1
            elif "D_nm2_per_ps" in d:
                assert d["finite_size"].startswith("not corrected"), (t, name)
            # the comparison's D rows and alpha are corrected alike when both liquids' estimates are positive
            both = min(aa["viscosity_mPa_s"], eta["viscosity_mPa_s"]) > 0
            made_with = yaml.safe_load((out / f"T{t}" / f"compare_{name}.yaml").read_text()).get("viscosity")
            assert (made_with == {"reference": f"{aa['viscosity_mPa_s']} mPa*s",
                                  "model": f"{eta['viscosity_mPa_s']} mPa*s"}) if both else made_with is None, (t, name)
            rows = json.loads((out / f"T{t}" / f"compare_{name}" / "comparison.json").read_text())["rows"]
            if any(r["quantity"].startswith("D (molecular COM") for r in rows):
                assert any("Yeh-Hummer" in r["quantity"] for r in rows) == both, (t, name)
    assert corrected > 0
    md = (out / "summary.md").read_text()
    assert "## Shear viscosity (mPa s, periodic perturbation)" in md and "Finite size: D, activation" in md


def _tiny_study(out: Path, **changes):
    from openmm_cgml.sweep.temperature import TemperatureStudyConfig

    return TemperatureStudyConfig.from_data(tiny_config("temperature/tmp.yaml", out, density="0.5 g/cm**3",
                                                        components=[{"smiles": "CCCC", "count": 30, "name": "BUT"}],
                                                        **changes))


def test_a_failed_temperature_loses_no_other_and_a_rerun_retries_it(tmp_path, monkeypatch):
    from openmm_cgml.exceptions import SimulationError
    from openmm_cgml.sweep import temperature as study

    c = _tiny_study(tmp_path / "fail")
    original = study._reference_job

    def failing_at_310(settings, output, overwrite):
        if settings["temperature"].startswith("310"):
            raise SimulationError("a blow-up at 310 K (injected)")
        return original(settings, output, overwrite)

    monkeypatch.setattr(study, "_reference_job", failing_at_310)
    with pytest.raises(SimulationError, match=r"failed at 310 K \(SimulationError: a blow-up at 310 K"):
        study._run_references(c, c.output, study._Costs(c.output / "costs.json"), False, study._Executor(c))
    assert json.loads((c.output / "T310" / "failed.json").read_text())["temperature_K"] == 310.0
    assert (c.output / "T280" / "aa.h5").exists() and (c.output / "T340" / "aa.h5").exists()
    done = {k for k in json.loads((c.output / "costs.json").read_text())}
    assert done == {"aa 280 K", "aa 340 K"}
    # the rerun runs only the failed temperature
    monkeypatch.setattr(study, "_reference_job", original)
    records = study._run_references(c, c.output, study._Costs(c.output / "costs.json"), False, study._Executor(c))
    assert set(records) == {280.0, 310.0, 340.0} and not (c.output / "T310" / "failed.json").exists()
    assert set(json.loads((c.output / "costs.json").read_text())) == {"aa 280 K", "aa 310 K", "aa 340 K"}


def test_references_run_as_dask_tasks(tmp_path):
    """With ``execution`` the references are tasks on the sweep's executor (here a LocalCluster of two threads):
    the same datasets as in sequence, each recorded with its cost."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.sweep import temperature as study

    c = _tiny_study(tmp_path / "dask", execution={"cluster": "local", "workers": 2, "processes": False})
    with study._Executor(c) as executor:
        records = study._run_references(c, c.output, study._Costs(c.output / "costs.json"), False, executor)
        assert executor.client is not None  # the jobs ran as tasks
    assert set(records) == {280.0, 310.0, 340.0}
    for t in (280, 310, 340):
        ds = open_dataset(c.output / f"T{t}" / "aa.h5")
        assert ds.metadata["completed"] and ds.metadata["temperature_K"] == pytest.approx(t)
    assert set(json.loads((c.output / "costs.json").read_text())) == {"aa 280 K", "aa 310 K", "aa 340 K"}

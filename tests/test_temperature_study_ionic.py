"""``cgml temperature`` on the ionic-liquid examples at a tiny size: BMIM-BF4 end to end (explicit, sourced anion
charges scaled with the cation's, CL&P's BF4- parameters layered on Sage, PME, the learned 4-bead mapping of the ion
pair, D and Arrhenius fits per ion); BMIM-PF6, whose study differs only in its anion, through its AA reference.
(A file of its own, so that pytest-xdist runs it beside ``test_temperature_study.py``.)"""

import json

import openmm
import pytest
import yaml
from test_temperature_study import ROOT, _check_summary, _run, tiny_config

from openmm_cgml.testing import requires_openff

pytestmark = [requires_openff, pytest.mark.slow]


def _ionic_config(example: str, out) -> tuple[dict, dict]:
    data = yaml.safe_load((ROOT / "examples" / "ionic_liquid" / example).read_text())
    components = [dict(c, count=16) for c in data["components"]]
    assert any("charges_source" in c for c in components)
    extra = [str(ROOT / p) for p in data.get("extra_forcefields", [])]
    return data, tiny_config(f"ionic_liquid/{example}", out, components=components, density="1.0 g/cm**3",
                             extra_forcefields=extra)


def _check_anion_charges(meta: dict, data: dict, anion: str) -> None:
    """The anion's charges are the example's, scaled, and the dataset says where they come from."""
    anion_rec = next(c for c in meta["components"] if c["name"] == anion)
    assert anion_rec["charges_source"].startswith("CL&P") and anion_rec["charge_scale"] == 0.8
    given = data["components"][1]["partial_charges"]
    assert min(anion_rec["partial_charges_e"]) == pytest.approx(0.8 * min(given.values()))
    assert max(anion_rec["partial_charges_e"]) == pytest.approx(0.8 * max(given.values()))


def test_temperature_study_bmim_bf4_tiny(tmp_path):
    out = tmp_path / "il"
    data, config = _ionic_config("bmim_bf4.yaml", out)
    config["mapping"] = dict(data["mapping"], options={"epochs": 30, "restarts": 1, "max_frames": 20, "seed": 0})
    # every neural model refined for structure at its training temperatures: one iteration each, which samples the
    # model with zero corrections, so each refined model must run exactly as its model (same seeds) at every
    # temperature, interpolated ones included: the network evaluated at the run's temperature, the tables adding 0
    config["refine"] = {"max_iterations": 1, "equilibration_steps": 50, "production_steps": 200, "sample_interval": 20,
                        "timestep": "4 fs"}
    proc, _ = _run(config, tmp_path, "il")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = _check_summary(out, {"BMI", "BF4"}, "learned", refined=True)
    _check_refinements(out, summary)
    assert summary["execution"] == "in sequence, in one process"
    mapping_data = json.loads((out / "mapping.json").read_text())
    beads = {m["residue_name"] if "residue_name" in m else m.get("name"): len(m["bead_types"])
             for m in mapping_data["molecule_types"]}
    assert sorted(beads.values()) == [1, 3], beads
    from openmm_cgml.dataset import open_dataset

    _check_anion_charges(open_dataset(out / "T280" / "aa.h5").metadata, data, "BF4")
    for species in ("BMI", "BF4"):
        assert species in summary["arrhenius"]["activation_energy"]


def _check_refinements(out, summary: dict) -> None:
    """Each model refined where it was trained, at that temperature; at the temperature a model left out, its
    corrections interpolated between the nearest refinements (inside the range) or the nearest one's (beyond it);
    the refined models' runs evaluate the network at each run's temperature."""
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.workflows.ibi import BASE_MODEL

    assert set(summary["refinement"]) == {"all", "loto_310K", "loto_340K"}
    for name, rec in summary["refinement"].items():
        assert "error" not in rec, rec
        assert set(rec["refined_at"]) == {f"{t:g}" for t in summary["models"][name]["trained_at_K"]}
    fitted = yaml.safe_load((out / "T280" / "refine_loto_310K.yaml").read_text())
    assert fitted["base_model"].endswith("loto_310K/model.cgml") and fitted["initial"] == "zero"
    inside = yaml.safe_load((out / "T310" / "refined_loto_310K" / "config.yaml").read_text())
    assert inside["weights"] == {"280 K": 0.5, "340 K": 0.5} and not inside["clamped"]
    beyond = yaml.safe_load((out / "T340" / "refined_loto_340K" / "config.yaml").read_text())
    assert beyond["weights"] == {"310 K": 1.0} and beyond["clamped"]
    for t in ("280", "310", "340"):
        source = out / f"T{t}" / "refined_loto_340K"
        assert (source / BASE_MODEL).exists()
        (neural,) = [term for term in CGPotential(source, temperature=float(t)).terms if term.kind == "neural"]
        assert neural.temperature == float(t)
    for t, runs in summary["runs"].items():
        for name in summary["refinement"]:
            assert runs[f"{name}_refined"]["rdf_error"] == pytest.approx(runs[name]["rdf_error"], rel=1e-6), (t, name)
    assert any("refined" in g["goal"] for g in summary["goals"])
    assert "Structure refinements" in (out / "summary.md").read_text()
    assert "refinement" in summary["costs"]["totals"]


def test_bmim_pf6_reference_as_the_study_runs_it(tmp_path):
    """The PF6 example's AA reference at one of the study's temperatures, with the settings the study gives it: the
    sourced, scaled PF6- charges (not AM1-BCC's P -0.50 e), net charge zero, PME."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.sweep.temperature import TemperatureStudyConfig, _reference_settings
    from openmm_cgml.workflows.reference import run_reference

    data, config = _ionic_config("bmim_pf6.yaml", tmp_path / "il")
    study = TemperatureStudyConfig.from_data(config)
    settings = _reference_settings(study, 310.0)
    assert settings["temperature"].startswith("310") and settings["extra_forcefields"] == []
    result = run_reference(settings, tmp_path / "T310")
    meta = open_dataset(result.dataset).metadata
    _check_anion_charges(meta, data, "PF6")
    system = openmm.XmlSerializer.deserialize(result.system_xml.read_text())
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.PME
    charges = [nonbonded.getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge)
               for i in range(system.getNumParticles())]
    assert sum(charges) == pytest.approx(0.0, abs=1e-6)
    assert sum(charges[:25]) == pytest.approx(0.8, abs=1e-6)   # one cation (25 atoms), scaled to +0.8 e
    assert result.n_frames > 0

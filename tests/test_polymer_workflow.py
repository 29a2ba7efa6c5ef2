"""``cgml polymer`` at a tiny size: the AA oligomer melt, repeat-unit mapping, IBI and neural models with chain
analysis, and transfer to longer chains (one with its own AA reference), then a rerun that resumes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from openmm_cgml.dataset import open_dataset
from openmm_cgml.testing import requires_ambertools, requires_openff

pytestmark = [requires_openff, requires_ambertools, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(out: Path) -> dict:
    """examples/polymer/pe.yaml shrunk: 24 x n-C12 (Gasteiger charges) in a dilute box, packed at its density (packmol places the
    extended longer chains), a few ps everywhere.  The timestep scan's trials are 1,000 steps: the NVE drift of the
    one-iteration IBI model at 2.5 fs scatters by 0.05 kT/ns per degree of freedom at 250 steps and crossed the 0.1
    limit once at 500 (0.105 +/- 0.023, under load); at 1,000 it was -0.02 +/- 0.005."""
    data = yaml.safe_load((ROOT / "examples" / "polymer" / "pe.yaml").read_text())
    data.update(output=str(out), smiles="C" * 12, count=24, density="0.4 g/cm**3", packing_fraction=None,
                charge_method="gasteiger", cg_duration_ps=2.0,
                npt_duration_ps=5.0, cg_equilibration_steps=100, scan_steps=1000, platform="CPU",
                reference={"nvt": "1 ps", "npt": "2 ps", "production": "4 ps", "report_interval": "0.1 ps",
                           "checkpoint_interval": "2 ps", "cutoff": "0.8 nm"},
                ibi={"max_iterations": 1, "equilibration_steps": 100, "production_steps": 400, "sample_interval": 20,
                     "cutoff": "0.8 nm"},
                training={"epochs": 1}, model={"inter_cutoff": "0.7 nm"},
                transfer=[{"smiles": "C" * 22, "count": 30, "name": "C22", "aa_reference": True,
                           "reference": {"hydrogen_mass": "3 Da", "timestep": "4 fs"}},
                          {"smiles": "C" * 44, "count": 6, "name": "C44", "duration_ps": 1.0, "models": ["ibi"]}])
    return data


def test_polymer_workflow_tiny(tmp_path, monkeypatch):
    out = tmp_path / "pe"
    (tmp_path / "pe.yaml").write_text(yaml.safe_dump(tiny_config(out)))
    cmd = [sys.executable, "-m", "openmm_cgml.cli", "polymer", str(tmp_path / "pe.yaml"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    mapping = json.loads((out / "mapping.json").read_text())
    # n-C12 with [CH2][CH2]: 5 repeat units, the CH3 ends merged into the end beads, typed apart from the middle
    types = mapping["molecule_types"][0]["bead_types"]
    assert len(types) == 5 and types[0] == types[4] != types[1] == types[2] == types[3]
    chains = summary["chains"]
    assert set(chains) == {"AA", "IBI", "neural"}
    # IBI targets the AA melt's barostat pressure (pe.yaml's default, 1 bar) and says what it reached
    ibi = summary["ibi"]
    assert ibi["target_pressure_bar"] == pytest.approx(1.0) and ibi["iterations"] >= 1
    assert ibi["pressure_held"] == (abs(ibi["pressure_bar"] - 1.0) <= 100.0) and np.isfinite(ibi["rdf_error"])
    assert yaml.safe_load((out / "ibi.yaml").read_text())["target_pressure"] == "1 bar"
    assert "## IBI fit" in (out / "summary.md").read_text()
    for label, rec in chains.items():
        assert rec["beads_per_chain"] == 5 and rec["chains"] == 24, label
        rg2, ree2 = rec["rg2_nm2"], rec["ree2_nm2"]
        # a chain of 5 beads 0.25-0.4 nm apart: Rg^2 < Ree^2 < a rod's
        assert 0.01 < rg2[0] < ree2[0] < (4 * 0.4) ** 2, (label, rg2, ree2)
        assert rec["end_to_end"]["decayed"] in (True, False) and "regime" in rec["com_msd"]
    # a few ps cannot relax the chains or reach diffusion: said, and no alpha is made up
    for what in ("chain_com", "monomer"):
        alpha = summary["alpha"]["ibi"][what]
        assert alpha["alpha"] is None and "no diffusive regime" in alpha["reason"], alpha
    assert "regime" in chains["AA"]["monomer_msd"]
    # each model's density at the AA pressure, set beside the AA melt's
    for label in ("IBI", "neural"):
        npt = summary["npt"][label]
        assert npt["reference_g_cm3"] == pytest.approx(summary["aa"]["density_g_cm3"]) and npt["steps"] >= 500
        assert npt["holds"] in (True, False) and npt["note"], npt
        if npt["settled"]:
            assert np.isfinite(npt["density_g_cm3"]) and npt["density_err_g_cm3"] > 0
    assert "Density at the AA pressure" in (out / "summary.md").read_text()
    for name in ("compare/comparison.md", "neural_compare/comparison.md", "chain_scaling.png", "summary.md",
                 "chains.json"):
        assert (out / name).exists(), name
    # transfer: the longer chains mapped the same way, run with both force fields; C22 compared with its AA melt
    c22, c44 = summary["transfer"]["C22"], summary["transfer"]["C44"]
    assert c22["beads_per_chain"] == 10 and c44["beads_per_chain"] == 21
    assert set(c22["models"]) == {"ibi", "neural"} and set(c44["models"]) == {"ibi"}  # C44 names its models
    # every transfer run, and C22's AA melt, says whether its chains stayed shorter than half its box (6 chains of
    # C44 do not)
    for rec in (c22["aa"], c22["models"]["ibi"], c44["models"]["ibi"]):
        box = rec["chain_box"]
        assert box["chains"] in (30, 6) and 0 < box["largest_extent_nm"] and box["limit_nm"] > 0
        assert (box["chains_at_limit"] > 0) == (box["largest_extent_nm"] >= box["limit_nm"])
    assert c44["models"]["ibi"]["chain_box"]["chains_at_limit"] > 0
    assert "aa" in c22 and "aa" not in c44
    # every chain record says whether <Ree^2> drifts between the run's halves (paired over chains)
    for rec in (c22["aa"], c22["models"]["ibi"], *chains.values()):
        drift = rec["ree2_drift"]
        first, second, change = drift["first_half_nm2"], drift["second_half_nm2"], drift["change_nm2"]
        assert change[0] == pytest.approx(second[0] - first[0]) and change[1] > 0
        assert drift["stationary"] == (abs(change[0]) <= 2 * change[1])
    # C22's AA melt repartitions hydrogen masses (a 4 fs step): its dynamics are flagged, its masses physical
    assert c22["aa"]["hydrogen_mass_da"] == 3.0 and "not those of physical masses" in c22["aa"]["dynamics_note"]
    aa22 = open_dataset(out / "transfer" / "C22" / "aa.h5")
    assert aa22.metadata["timestep_ps"] == pytest.approx(0.004) and aa22.metadata["hydrogen_mass_da"] == 3.0
    assert np.isclose(np.asarray(aa22.masses), 1.008, atol=0.01).sum() == 30 * 46
    rows = {r["quantity"] for r in c22["models"]["ibi"]["comparison"]}
    assert any(q.startswith("g_inter") for q in rows)
    # C22's CG runs are at its AA melt's own state point (its production box), C44's at the short melt's density
    assert c22["density_from"] == "its AA melt's production box" and c44["density_from"] == "the short melt's AA density"
    # C22's CG runs start from its AA melt's last frame (mapped), C44's from grown random walks; the runs say so
    assert c22["cg_start"] == "its AA melt's last frame, mapped" and c44["cg_start"] == "grown random walks"
    assert open_dataset(out / "transfer" / "C22" / "ibi_run.h5").metadata["cg_start"] == c22["cg_start"]
    density_row = next(r for r in c22["models"]["ibi"]["comparison"] if r["quantity"] == "density")
    assert abs(density_row["value"]) < 1e-6, density_row
    assert c22["box_nm"] == pytest.approx(float(np.asarray(aa22.box[-1])[0, 0]), rel=1e-6)
    for rec in (c22["aa"], c22["models"]["ibi"], c44["models"]["ibi"]):
        assert np.isfinite(rec["rg2_nm2"][0]) and rec["rg2_nm2"][0] > 0
    # C44's runs are as long as its own duration_ps, the others' as cg_duration_ps
    assert c44["models"]["ibi"]["duration_ps"] <= 1.0 + 1e-6 < c22["models"]["ibi"]["duration_ps"] <= 2.0 + 1e-6
    # longer chains are larger
    assert c44["models"]["ibi"]["rg2_nm2"][0] > c22["models"]["ibi"]["rg2_nm2"][0] > chains["IBI"]["rg2_nm2"][0]
    assert len(summary["scaling"]["IBI"]) == 3 and len(summary["scaling"]["AA"]) == 2
    # a model that cannot run on a transfer target is recorded as failed (with why), the others still run
    from openmm_cgml import SimulationError
    from openmm_cgml.workflows import polymer

    real_run = polymer._model_run

    def failing_neural(c, folder, name, *args, **kwargs):
        if name == "neural":
            raise SimulationError("the neural model on the longer chains does not conserve energy even at 2.5 fs")
        return real_run(c, folder, name, *args, **kwargs)

    monkeypatch.setattr(polymer, "_model_run", failing_neural)
    config = polymer.PolymerConfig.from_data(tiny_config(out))
    target = polymer.TransferTarget(smiles="C" * 16, count=12, name="C16", duration_ps=1.0)
    record = polymer._transfer(config, out, target, chains["AA"], {"ibi": out / "ibi", "neural": out / "neural" /
                                                                   "model.cgml"}, summary["aa"]["density_g_cm3"], False)
    assert "conserve energy" in record["models"]["neural"]["failed"]
    assert record["models"]["ibi"]["beads_per_chain"] == 7 and record["models"]["ibi"]["rg2_nm2"][0] > 0
    # an AA melt of a target recorded elsewhere (aa_dataset: here C22's, mapped, positions only, as a GPU run brings
    # back) is compared with as its own AA reference is: same chain record, CG runs from its last frame in its box
    from dataclasses import replace

    from openmm_cgml.dataset import write_dataset

    mapped22 = open_dataset(out / "transfer" / "C22" / "cg_reference.h5")
    given = tmp_path / "c22_elsewhere.h5"
    write_dataset(given, replace(mapped22, velocities=None, forces=None))
    target = polymer.TransferTarget(smiles="C" * 22, count=30, name="C22_given", duration_ps=1.0, models=["ibi"],
                                    aa_dataset=given)
    record = polymer._transfer(config, out, target, chains["AA"], {"ibi": out / "ibi"},
                               summary["aa"]["density_g_cm3"], False)
    assert record["aa"]["source"] == str(given) and record["aa"]["ree2_nm2"] == pytest.approx(c22["aa"]["ree2_nm2"])
    assert record["cg_start"] == "its AA melt's last frame, mapped" and record["box_nm"] == pytest.approx(c22["box_nm"])
    run = open_dataset(out / "transfer" / "C22_given" / "ibi_run.h5")
    assert np.allclose(run.box[0], mapped22.box[-1])
    assert any(r["quantity"].startswith("g_inter") for r in record["models"]["ibi"]["comparison"])
    # a rerun finds every output and redoes nothing
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["chains"]["AA"] == chains["AA"]


def test_the_melt_is_packed_at_a_fraction_of_its_density_and_compressed():
    """``packing_fraction`` (default 0.6) becomes the reference's ``packing_density``; null packs at the density;
    the ``reference:`` block may still set it.  (The compression itself: tests/test_reference_run.py.)"""
    from openmm_cgml.reference import ReferenceConfig
    from openmm_cgml.workflows.polymer import PolymerConfig, _reference_settings

    base = dict(smiles="C" * 16, repeat_smarts="[CH2][CH2]", density="0.75 g/cm**3")
    settings = _reference_settings(PolymerConfig.from_data(base), "C" * 16, 48, "PE")
    assert ReferenceConfig.from_data(settings).packing_density == pytest.approx(0.45)
    assert "packing_density" not in _reference_settings(PolymerConfig.from_data({**base, "packing_fraction": None}),
                                                        "C" * 16, 48, "PE")
    custom = PolymerConfig.from_data({**base, "reference": {"packing_density": "0.3 g/cm**3"}})
    assert ReferenceConfig.from_data(_reference_settings(custom, "C" * 16, 48, "PE")).packing_density == 0.3

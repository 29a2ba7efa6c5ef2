"""``cgml compare`` end to end on synthetic datasets with known diffusion and activation energies."""

import json

import numpy as np
import pytest
import yaml
from _dimers import write_dimers as _write_dimers

from openmm_cgml.analysis import GAS_CONSTANT
from openmm_cgml.cli import main
from openmm_cgml.dynamics import load_alpha_model


def _d(ln_a, ea, t):
    return float(np.exp(ln_a - ea / (GAS_CONSTANT * t)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    temps = [280.0, 300.0, 330.0]
    truth = {"aa": (np.log(2.0), 20.0), "cg": (np.log(2.0 * 5.0) + (12.0 - 20.0) / (GAS_CONSTANT * 300.0), 12.0)}
    entries = []
    for i, t in enumerate(temps):
        for side, kind in (("aa", "all-atom"), ("cg", "coarse-grained")):
            _write_dimers(base / f"{side}_{t:g}.h5", _d(*truth[side], t), seed=10 * i + (side == "cg"), kind=kind,
                          temperature=t)
        entries.append({"temperature": f"{t:g} K", "reference": f"aa_{t:g}.h5", "model": f"cg_{t:g}.h5"})
    config = {"reference": "aa_300.h5", "model": "cg_300.h5", "output": "out", "r_max": "1.2 nm", "n_bins": 40,
              "temperatures": entries}
    (base / "compare.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(base / "compare.yaml")]) == 0
    return base, truth


def test_compare_writes_table_figures_and_alpha_model(runs):
    base, truth = runs
    out = base / "out"
    for name in ("comparison.json", "comparison.md", "comparison.csv", "rdf.png", "distributions.png",
                 "density_msd.png", "arrhenius.png", "alpha_model.json"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["quantity"]: r for r in json.loads((out / "comparison.json").read_text())["rows"]}
    # same structure on both sides: small RDF differences, near-identical bond distributions and densities
    # (the rms difference of two independent noisy estimates of g = 1 with 60 molecules is about 0.2)
    assert rows["g_inter(A-B)"]["value"] < 0.35 and rows["g(COM-COM)"]["value"] < 0.35
    assert rows["bond A-B"]["value"] > 0.8
    # NVT: the density is fixed, shown without an error bar (not "+/- 6e-18")
    assert rows["density"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert rows["density"]["reference_err"] is None and rows["density"]["reference_err_kind"] == "fixed (NVT)"
    d = rows["D (molecular COM, simulated box)"]
    assert "Nose-Hoover tau 0.5 ps" in d["reference_note"] and "converged: local slope" in d["model_note"]
    assert "finite size not corrected" in d["note"]
    # dynamics: alpha = 5 at 300 K, Ea(AA) = 20 and Ea(CG) = 12 kJ/mol
    alpha = rows["alpha"]
    assert abs(alpha["model"] - 5.0) < 4 * alpha["model_err"]
    ea = rows["Ea (Arrhenius, D)"]
    assert abs(ea["reference"] - 20.0) < 4 * ea["reference_err"]
    assert abs(ea["model"] - 12.0) < 4 * ea["model_err"]
    model = load_alpha_model(out / "alpha_model.json")
    assert model.alpha(300.0) == pytest.approx(5.0, rel=0.25)
    md = (out / "comparison.md").read_text()
    assert "| density |" in md and "(fixed (NVT))" in md and "(s.e.) [Nose-Hoover tau 0.5 ps" in md


def test_compare_bad_configurations(runs, tmp_path, capsys):
    base, _ = runs
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"reference": str(base / "aa_300.h5"), "model": str(base / "cg_300.h5"),
                                   "output": str(tmp_path / "o"), "r_max": 1.2}))
    assert main(["compare", str(bad)]) == 1
    assert "no unit" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"reference": str(base / "missing.h5"), "model": str(base / "cg_300.h5"),
                                   "output": str(tmp_path / "o")}))
    assert main(["compare", str(bad)]) == 1
    assert "does not exist" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"reference": str(base / "aa_300.h5"), "model": str(base / "cg_300.h5"),
                                   "output": str(tmp_path / "o"), "r_max": "2 nm"}))
    assert main(["compare", str(bad)]) == 1
    assert "half the smallest box width" in capsys.readouterr().err


def test_compare_replicas_viscosity_and_thermostat_refusal(runs, tmp_path):
    """Replicas average D with an error covering their spread; viscosities add Yeh-Hummer corrected D (the
    same formula for both runs); Langevin runs get no alpha unless allowed, and the table says why."""
    base, _ = runs
    for k in range(3):
        _write_dimers(tmp_path / f"aa_rep{k}.h5", 0.01, seed=100 + k, kind="all-atom")
        _write_dimers(tmp_path / f"cg_rep{k}.h5", 0.05, seed=200 + k, kind="coarse-grained")
        for side, d in (("aa", 0.01), ("cg", 0.05)):
            _write_dimers(tmp_path / f"{side}_lv{k}.h5", d, seed=300 + k, kind="all-atom",
                          thermostat={"kind": "langevin", "friction_per_ps": 1.0})
    config = {"reference": [f"aa_rep{k}.h5" for k in range(3)], "model": [f"cg_rep{k}.h5" for k in range(3)],
              "output": "rep", "r_max": "1.2 nm", "n_bins": 40,
              "viscosity": {"reference": "0.5 mPa*s", "model": "0.1 mPa s"}}
    (tmp_path / "rep.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path / "rep.yaml")]) == 0
    rows = {r["quantity"]: r for r in json.loads((tmp_path / "rep" / "comparison.json").read_text())["rows"]}
    plain, corrected = rows["D (molecular COM, simulated box)"], rows["D (molecular COM, Yeh-Hummer corrected)"]
    assert "3 replicas" in plain["reference_note"] and plain["note"] == ""
    # the correction kT xi / (6 pi eta L) for L = 3 nm, 300 K: 4.1564e-4 nm^2/ps at 0.5 mPa s, 5x that at 0.1
    assert corrected["reference"] - plain["reference"] == pytest.approx(4.1564e-4, rel=2e-3)
    assert corrected["model"] - plain["model"] == pytest.approx(5 * 4.1564e-4, rel=2e-3)
    alpha = rows["alpha"]
    assert alpha["model"] == pytest.approx(corrected["model"] / corrected["reference"])
    assert "Yeh-Hummer corrected" in alpha["metric"] and abs(alpha["model"] - 5.0) < 4 * alpha["model_err"]

    config = {"reference": "aa_lv0.h5", "model": "cg_lv0.h5", "output": "lv", "r_max": "1.2 nm", "n_bins": 40}
    (tmp_path / "lv.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path / "lv.yaml")]) == 0
    rows = {r["quantity"]: r for r in json.loads((tmp_path / "lv" / "comparison.json").read_text())["rows"]}
    assert rows["alpha"]["model"] is None
    assert "alpha refused" in rows["alpha"]["note"] and "Langevin 1 /ps" in rows["alpha"]["note"]
    assert "allow_thermostat_mismatch" in rows["alpha"]["note"]
    assert "Langevin 1 /ps" in rows["D (molecular COM, simulated box)"]["reference_note"]
    (tmp_path / "lv.yaml").write_text(yaml.safe_dump({**config, "allow_thermostat_mismatch": True}))
    assert main(["compare", str(tmp_path / "lv.yaml")]) == 0
    rows = {r["quantity"]: r for r in json.loads((tmp_path / "lv" / "comparison.json").read_text())["rows"]}
    assert rows["alpha"]["model"] > 0 and "thermostat mismatch allowed" in rows["alpha"]["note"]
    # a Nose-Hoover model against a Langevin reference is refused, naming both
    config = {"reference": "aa_lv0.h5", "model": "cg_rep0.h5", "output": "mix", "r_max": "1.2 nm", "n_bins": 40}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", str(tmp_path / "mix.yaml")]) == 0
    note = {r["quantity"]: r for r in json.loads((tmp_path / "mix" / "comparison.json").read_text())["rows"]}[
        "alpha"]["note"]
    assert "the thermostats differ" in note and "reference Langevin 1 /ps, model Nose-Hoover tau 0.5 ps" in note


def test_compare_bad_viscosity(runs, tmp_path, capsys):
    base, _ = runs
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"reference": str(base / "aa_300.h5"), "model": str(base / "cg_300.h5"),
                                   "output": str(tmp_path / "o"), "viscosity": {"reference": "0.5 mPa*s"}}))
    assert main(["compare", str(bad)]) == 1
    assert "viscosity.model" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"reference": str(base / "aa_300.h5"), "model": str(base / "cg_300.h5"),
                                   "output": str(tmp_path / "o"), "viscosity": {"reference": "-1 mPa*s",
                                                                                 "model": "0.1 mPa*s"}}))
    assert main(["compare", str(bad)]) == 1
    assert "must be positive" in capsys.readouterr().err

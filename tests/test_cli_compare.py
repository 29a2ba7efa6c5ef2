"""``cgml compare`` end to end on synthetic datasets with known diffusion and activation energies."""

import json

import numpy as np
import pytest
import yaml
from openmm import app

from openmm_cgml.analysis import GAS_CONSTANT
from openmm_cgml.cli import main
from openmm_cgml.dataset import TrajectoryWriter
from openmm_cgml.dynamics import load_alpha_model

L, N_MOL, N_FRAMES, DT = 3.0, 60, 150, 1.0


def _d(ln_a, ea, t):
    return float(np.exp(ln_a - ea / (GAS_CONSTANT * t)))


def _write_dimers(path, d_com, seed, kind):
    """Rigid-ish A-B dimers whose centres of mass diffuse with coefficient d_com (nm^2/ps)."""
    rng = np.random.default_rng(seed)
    top = app.Topology()
    chain = top.addChain()
    for _ in range(N_MOL):
        res = top.addResidue("DIM", chain)
        a, b = top.addAtom("A", None, res), top.addAtom("B", None, res)
        top.addBond(a, b)
    com = rng.uniform(0, L, (N_MOL, 3)) + np.cumsum(
        rng.normal(scale=np.sqrt(2 * d_com * DT), size=(N_FRAMES, N_MOL, 3)), axis=0)
    u = rng.normal(size=(N_FRAMES, N_MOL, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    bond = 0.3 + 0.01 * rng.normal(size=(N_FRAMES, N_MOL, 1))
    x = np.empty((N_FRAMES, 2 * N_MOL, 3))
    x[:, 0::2] = com - 0.5 * bond * u
    x[:, 1::2] = com + 0.5 * bond * u
    masses = np.full(2 * N_MOL, 20.0)
    with TrajectoryWriter(path, top, masses, {"test": True}, fields=("positions",), kind=kind) as w:
        for k in range(N_FRAMES):
            w.append(positions=x[k] % L, box=np.eye(3) * L, step=k * 100, time=k * DT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    temps = [280.0, 300.0, 330.0]
    truth = {"aa": (np.log(2.0), 20.0), "cg": (np.log(2.0 * 5.0) + (12.0 - 20.0) / (GAS_CONSTANT * 300.0), 12.0)}
    entries = []
    for i, t in enumerate(temps):
        for side, kind in (("aa", "all-atom"), ("cg", "coarse-grained")):
            _write_dimers(base / f"{side}_{t:g}.h5", _d(*truth[side], t), seed=10 * i + (side == "cg"), kind=kind)
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
    assert rows["density"]["value"] == pytest.approx(0.0, abs=1e-12)
    # dynamics: alpha = 5 at 300 K, Ea(AA) = 20 and Ea(CG) = 12 kJ/mol
    alpha = rows["alpha"]
    assert abs(alpha["model"] - 5.0) < 4 * alpha["model_err"]
    ea = rows["Ea (Arrhenius, D)"]
    assert abs(ea["reference"] - 20.0) < 4 * ea["reference_err"]
    assert abs(ea["model"] - 12.0) < 4 * ea["model_err"]
    model = load_alpha_model(out / "alpha_model.json")
    assert model.alpha(300.0) == pytest.approx(5.0, rel=0.25)
    assert "| density |" in (out / "comparison.md").read_text()


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

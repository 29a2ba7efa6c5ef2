"""``cgml report``: one self-contained HTML page for any workflow directory, with failed checks flagged.

Here on directories holding the files the workflows write (in their formats, with chosen values so that each
check fails once); the quick demo's own report is opened in headless Chromium in tests/test_demo.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from openmm_cgml.cli import main
from openmm_cgml.exceptions import ConfigurationError
from openmm_cgml.report import build_report, write_report

ROOT = Path(__file__).resolve().parents[1]


def validate_html(text: str) -> None:
    """An HTML5 conformance pass of the parser (html5lib, strict: any parse error raises), plus self-containment:
    no scripts, no external resources, every image embedded."""
    html5lib = pytest.importorskip("html5lib")
    html5lib.HTMLParser(strict=True).parse(text)
    assert "<script" not in text and "<link" not in text and "<iframe" not in text
    assert not re.search(r"""(src|href)=["'](https?:|//)""", text), "the page fetches from the network"
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img src="([^"]+)"', text))


def _png(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set(title=title, xlabel="x (nm)", ylabel="y (1)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _row(quantity, value, metric="rms difference", unit="1", **kw):
    row = {"quantity": quantity, "unit": unit, "reference": None, "reference_err": None, "model": None,
           "model_err": None, "metric": metric, "value": value, "reference_err_kind": "s.e.",
           "model_err_kind": "s.e.", "reference_note": "", "model_note": "", "note": ""}
    row.update(kw)
    return row


@pytest.fixture
def workflow(tmp_path):
    """A workflow directory in which each check fails once."""
    out = tmp_path / "wf"
    compare = out / "compare"
    compare.mkdir(parents=True)
    rows = [_row("g_inter(A-A)", 0.012), _row("density", 0.0, metric="model - reference", unit="g/cm**3"),
            _row("kinetic temperature (model run)", 14.0, metric="model - thermostat", unit="K",
                 note="the run did not hold its thermostat's temperature"),
            _row("D (molecular COM, simulated box)", 2.5, metric="model / reference", unit="nm**2/ps",
                 model_note="Bussi tau 1 ps; error blocks; not converged: local slope 0.6-0.8"),
            _row("alpha", 2.5, metric="D_model/D_ref", note="not converged (model: see D)"),
            _row("pressure (molecular virial)", 883.3, metric="model - reference", unit="bar",
                 note="51 and 100 frames; at the reference's density the model misses its pressure (2 s.e.)")]
    (compare / "comparison.json").write_text(json.dumps({"rows": rows, "metrics": {"rdf": "rms"},
                                                         "package_versions": {"openmm": "8.6.1"}}))
    for name in ("rdf.png", "density_msd.png"):
        _png(compare / name, name)
    ibi = out / "ibi"
    history = [{"iteration": i, "error": e, "pressure_bar": 100.0} for i, e in enumerate([0.1, 0.05, 0.06])]
    (ibi).mkdir()
    (ibi / "convergence.json").write_text(json.dumps({"converged": False, "best_iteration": 1,
                                                      "stop_reason": "max_iterations", "history": history}))
    _png(ibi / "convergence.png", "convergence")
    train = out / "neural"
    train.mkdir()
    (train / "loss_curve.json").write_text(json.dumps({"units": "(kJ/mol/nm)^2", "history": [{"epoch": 0}]}))
    (train / "training_summary.json").write_text(json.dumps({
        "validation": {"mse": 2.9009e5}, "best_epoch": 3,
        "baselines": {"zero_force_mse": 4.2e5, "prior_only_mse": 2.9004e5,
                      "prior_margin": {"beats_priors": False, "relative_improvement": -0.0002,
                                       "relative_improvement_err": 0.001}}}))
    (out / "cg_timestep_scan.json").write_text(json.dumps({
        "largest_stable_fs": None, "max_drift_kT_per_ns_per_dof": 0.1,
        "trials": {"10 fs": {"stable": False, "energy_drift_kT_per_ns_per_dof": 3.0}}}))
    (out / "map.yaml").write_text("dataset: aa.h5\noutput: cg.h5\n")
    return out


def test_every_failed_check_is_flagged_and_the_page_is_valid_and_self_contained(workflow):
    report = build_report(workflow)
    flags = "\n".join(report.flags)
    for expected in ("kinetic temperature (model run): temperature not held", "D (molecular COM, simulated box): "
                     "not converged", "alpha: not converged", "IBI ibi: did not converge (max_iterations)",
                     "training neural: no better than its priors", "timestep scan cg: no trial timestep passed",
                     "pressure (molecular virial): pressure missed"):
        assert expected in flags, expected
    assert "g_inter(A-A)" not in flags and "density" not in flags  # rows that pass are not flagged
    assert [t for t, _ in report.sections] == ["What was run", "Structure", "Dynamics", "Model building"]
    assert report.figures == 3
    assert any("mapping" in m for m in report.missing)
    path = write_report(workflow)
    text = path.read_text()
    validate_html(text)
    assert text.count('class="flag"') >= 2 * len(report.flags)  # in the checks list and at the value
    assert "map.yaml" in text and "rms" in text  # the configurations and how each metric is computed


def test_any_directory_gets_a_page_saying_what_is_missing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    report = build_report(empty)
    assert report.flags == [] and report.figures == 0
    assert {m.split(" (")[0] for m in report.missing} == {
        "mapping", "structure and dynamics against a reference", "IBI convergence", "neural training"}
    assert main(["report", str(empty)]) == 0
    out = capsys.readouterr().out
    assert "report.html: 1 sections, 0 figures, 0 failed checks" in out and "cgml compare" in out
    validate_html((empty / "report.html").read_text())
    with pytest.raises(ConfigurationError, match="not a directory"):
        build_report(tmp_path / "nowhere")
    assert main(["report", str(tmp_path / "nowhere")]) == 1


def test_a_reference_dataset_directory_shows_its_temperature_check(tmp_path):
    """A directory with only a dataset (what cgml reference or cgml run writes): its frames, thermostat and
    whether it held its temperature."""
    from openmm import app

    from openmm_cgml.dataset import TrajectoryWriter

    out = tmp_path / "ref"
    out.mkdir()
    top = app.Topology()
    residue = top.addResidue("MOL", top.addChain())
    for i in range(4):
        top.addAtom(f"B{i}", None, residue)
    meta = {"temperature_K": 300.0, "thermostat": {"kind": "bussi", "tau_ps": 1.0},
            "temperature_check": {"mean_temperature_K": 340.0, "temperature_sem_K": 2.0, "held": False}}
    with TrajectoryWriter(out / "run.h5", top, np.full(4, 40.0), meta, fields=("positions",),
                          kind="coarse-grained") as w:
        for i in range(3):
            w.append(positions=np.random.default_rng(i).random((4, 3)), box=np.eye(3) * 2.0, step=i, time=float(i))
    report = build_report(out)
    assert report.flags == ["run.h5: temperature not held"]
    assert [t for t, _ in report.sections] == ["What was run", "Datasets"]
    validate_html(write_report(out).read_text())


@pytest.mark.slow
def test_the_page_opens_in_a_real_browser_without_errors(workflow, tmp_path):
    from _browser import inspect_page

    page = inspect_page(write_report(workflow), tmp_path / "shot.png")
    assert page["console_errors"] == [] and page["exceptions"] == [] and page["log_errors"] == []
    assert page["failed_loads"] == []
    assert len(page["images"]) == 3
    for image in page["images"]:
        assert image["complete"] and min(image["natural"]) > 0 and min(image["shown"]) > 0, image
    assert all(not url.startswith("http") for url in page["requests"])
    assert (tmp_path / "shot.png").stat().st_size > 10_000

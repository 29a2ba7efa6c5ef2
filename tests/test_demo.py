"""The README's main command, `cgml demo`, on a small box (a smoke test of the whole workflow)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openmm_cgml.dataset import open_dataset
from openmm_cgml.testing import requires_ambertools, requires_openff

pytestmark = [requires_openff, requires_ambertools, pytest.mark.slow]


def test_demo_quick_runs_the_whole_workflow(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "openmm_cgml.cli", "demo", "--quick", "--molecules", "32", "-o", str(out),
           "--platform", "CPU"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert 0.55 < summary["aa"]["density_g_cm3"] < 0.85
    assert summary["ibi"]["iterations"] >= 1 and summary["ibi"]["rdf_error"] < 0.5
    cg = summary["cg"]
    # the IBI model runs 40 ps at the largest timestep whose NVE energy drift passed its scan, under Bussi's
    # thermostat (transport as in NVE, so alpha holds), and the summary records the drift and the thermostat
    cg_scan = json.loads((out / "cg_timestep_scan.json").read_text())
    assert cg_scan["max_drift_kT_per_ns_per_dof"] == 0.1 and cg_scan["trials"][f"{cg['timestep_fs']:g} fs"]["stable"]
    assert abs(cg["energy_drift_kT_per_ns_per_dof"]) <= 0.1 and cg["thermostat"]["kind"] == "bussi"
    assert cg["frames"] == int(40_000 / cg["timestep_fs"]) // 25 + 1
    assert cg["ns_per_day"] > summary["aa"]["ns_per_day"]
    assert open_dataset(out / "aa.h5").metadata["thermostat"]["kind"] == "bussi"  # D_AA, too, is NVE-like
    quantities = {row["quantity"] for row in summary["comparison"]}
    assert "alpha" in quantities and "g_inter(TMP_A-TMP_B)" in quantities  # pooled by bead type, as IBI fits them
    # step 6: the neural model, trained on the mapped forces, run through CGSystemBuilder and compared
    nn = summary["neural"]
    # run at the largest timestep whose NVE energy drift passed the scan (or, should that blow up over the longer
    # run, a smaller one that passed), for 10 ps
    scan = json.loads((out / "neural_timestep_scan.json").read_text())
    assert scan["trials"]["5 fs"]["stable"] and scan["trials"][f"{nn['timestep_fs']:g} fs"]["stable"]
    assert scan["max_drift_kT_per_ns_per_dof"] == 0.1 and nn["thermostat"]["kind"] == "bussi"
    assert abs(nn["energy_drift_kT_per_ns_per_dof"]) <= 0.1
    assert nn["epochs"] == 3 and nn["frames"] == int(10_000 / nn["timestep_fs"]) // 25 + 1
    assert nn["validation"]["mse"] < nn["baselines"]["zero_force_mse"]  # better than predicting no force
    assert "g_inter(TMP_A-TMP_B)" in nn["comparison_table"]
    for name in ("map.yaml", "ibi.yaml", "compare.yaml", "mapping.json", "cg_system.xml", "summary.md",
                 "ibi/convergence.png", "compare/comparison.md", "train.yaml", "neural/model.cgml",
                 "neural/loss_curve.png", "neural_system.xml", "neural_compare/comparison.md", "neural_summary.json"):
        assert (out / name).exists(), name
    assert "Neural CG force field" in (out / "summary.md").read_text()
    # the example script runs the trained model from a plain OpenMM script (app.Simulation and its reporters)
    example = subprocess.run([sys.executable, "examples/run_neural_cg.py", "--demo-dir", str(out), "--steps", "200",
                              "-o", str(tmp_path / "example")], capture_output=True, text=True, timeout=600,
                             cwd=Path(__file__).parents[1])
    assert example.returncode == 0, example.stderr[-3000:]
    assert f"at {nn['timestep_fs']:g} fs; alpha = " in example.stdout
    for name in ("state.csv", "trajectory.dcd", "system.xml", "dynamics.json"):
        assert (tmp_path / "example" / name).stat().st_size > 0, name
    # `cgml build` rebuilds the IBI model from the IBI output directory (pair tables + bonded_terms.json) and the
    # mapped dataset: the same System as the demo's own cg_system.xml (same energy)
    _check_build_from_ibi(out, tmp_path)
    _check_report(out, proc.stdout, tmp_path)
    # rerunning resumes: every step's output exists, so nothing is recomputed from scratch
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]


def _check_report(out, stdout, tmp_path):
    """The demo ends by printing its report's path; the page opens in headless Chromium without console errors
    or failed loads, every figure has a size, and it is valid HTML.  The screenshot is kept in test-artifacts/.
    Each kind of directory the demo wrote (IBI, training, comparison, the datasets alone) gets its own page."""
    import shutil

    from _browser import inspect_page
    from test_report import validate_html

    from openmm_cgml.report import build_report, write_report

    report = out / "report.html"
    assert stdout.rstrip().endswith(f"{report} (one self-contained page; open it in any browser).")
    artifacts = Path(__file__).parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page = inspect_page(report, artifacts / "report-quick-demo.png")
    assert page["console_errors"] == [] and page["exceptions"] == [] and page["log_errors"] == []
    assert page["failed_loads"] == [] and not [u for u in page["requests"] if u.startswith("http")]
    assert len(page["images"]) >= 8  # RDFs, distributions, MSD (x2 models), IBI, loss curve, speed ...
    for image in page["images"]:
        assert image["complete"] and min(image["natural"]) > 0 and min(image["shown"]) > 0, image
    assert (artifacts / "report-quick-demo.png").stat().st_size > 50_000
    text = report.read_text()
    validate_html(text)
    for heading in ("What was run", "Structure", "Dynamics", "Model building", "Speed", "Package versions",
                    "Mapping", "Configurations"):
        assert f">{heading}</h" in text, heading
    sections = {"ibi": "Model building", "neural": "Model building", "compare": "Structure"}
    for sub, section in sections.items():
        assert section in [t for t, _ in build_report(out / sub).sections], sub
    alone = tmp_path / "reference-only"
    alone.mkdir()
    shutil.copy(out / "aa.h5", alone)
    only = build_report(alone)
    assert [t for t, _ in only.sections] == ["What was run", "Datasets"] and len(only.missing) == 4
    validate_html(write_report(alone).read_text())


def _check_build_from_ibi(out, tmp_path):
    import shutil

    import openmm
    from openmm import unit

    from openmm_cgml.cli import main
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system

    build = (f"ibi: {out / 'ibi'}\ndataset: {out / 'cg_reference.h5'}\nsystem: {tmp_path / 'ibi_system.xml'}\n"
             f"pdb: {tmp_path / 'ibi.pdb'}\n")
    (tmp_path / "build.yaml").write_text(build)
    assert main(["build", str(tmp_path / "build.yaml")]) == 0
    x = open_dataset(out / "cg_reference.h5").positions[-1]

    def energy(system):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(x)
        return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    demo_system = load_system(out / "cg_system.xml")
    built = load_system(tmp_path / "ibi_system.xml")
    assert built.getNumForces() == demo_system.getNumForces()
    assert energy(built) == pytest.approx(energy(demo_system), rel=1e-9)
    # without its bonded terms the IBI output cannot make the molecules: a clear error
    partial = tmp_path / "ibi_no_bonded"
    shutil.copytree(out / "ibi", partial)
    (partial / "bonded_terms.json").unlink()
    (tmp_path / "build.yaml").write_text(build.replace(str(out / "ibi"), str(partial)))
    assert main(["build", str(tmp_path / "build.yaml")]) == 1

"""References prepared here and run elsewhere: ``run_reference(prepare_only=True)`` stops after the OpenFF steps
and a resumed run is the uninterrupted one; ``devtools/gpu_references.py`` runs a study's prepared references at
once in another copy of its folder and brings them back, refusing tars it did not write."""

import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from test_reference_run import ETHANE, _Crash, _CrashAfter

from openmm_cgml.dataset import open_dataset
from openmm_cgml.reference import run_reference
from openmm_cgml.testing import requires_openff

pytestmark = requires_openff
ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_references", ROOT / "devtools" / "gpu_references.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_prepared_reference_resumes_to_the_uninterrupted_run(tmp_path):
    whole = run_reference(ETHANE, tmp_path / "whole.h5")
    prepared = run_reference(ETHANE, tmp_path / "split.h5", prepare_only=True)
    assert prepared.n_frames == 0 and not prepared.dataset.exists() and prepared.checkpoint.exists()
    # elsewhere: the side files copied along, nothing rebuilt
    remote = tmp_path / "remote"
    remote.mkdir()
    for path in (prepared.checkpoint, prepared.system_xml, prepared.pdb):
        shutil.copy(path, remote / path.name)
    resumed = run_reference(ETHANE, remote / "split.h5")
    a, b = open_dataset(whole.dataset), open_dataset(resumed.dataset)
    np.testing.assert_array_equal(a.step, b.step)
    np.testing.assert_array_equal(a.positions, b.positions)  # bit-exact (Reference platform)
    np.testing.assert_array_equal(a.forces, b.forces)
    assert b.metadata["completed"]
    # preparing a run that is already past it changes nothing
    again = run_reference(ETHANE, remote / "split.h5", prepare_only=True)
    assert again.n_frames == a.n_frames


def test_portable_checkpoints_resume_mid_stage(tmp_path):
    """A run stopped mid-production with State-XML checkpoints resumes where it stopped: the same frames, bit-equal
    up to the checkpoint, then a statistically equivalent continuation (the random streams start afresh)."""
    from openmm_cgml._checkpoint import read_checkpoint

    whole = open_dataset(run_reference(ETHANE, tmp_path / "whole.h5").dataset)
    with pytest.raises(_Crash):  # dies after the 0.4 ps checkpoint
        run_reference(ETHANE, tmp_path / "cut.h5", reporters=[_CrashAfter(50, 6)], portable_checkpoints=True)
    header, payload = read_checkpoint(tmp_path / "cut.h5.chk")
    assert header["payload"] == "portable" and header["stage"] == "production" and header["step"] == 200
    assert payload.startswith(b"<?xml")
    resumed = open_dataset(run_reference(ETHANE, tmp_path / "cut.h5", portable_checkpoints=True).dataset)
    np.testing.assert_array_equal(resumed.step, whole.step)  # no gaps, no duplicates
    np.testing.assert_array_equal(resumed.positions[:5], whole.positions[:5])  # frames 0-0.4 ps: the same run
    assert np.isfinite(resumed.positions).all() and resumed.metadata["completed"]
    assert not np.array_equal(resumed.positions[-1], whole.positions[-1])  # the thermostat's new random stream
    # the record says where each part of the production ran
    assert resumed.metadata["platform_segments"] == [{"platform": "Reference", "from_step": 0},
                                                     {"platform": "Reference", "from_step": 200}]
    assert whole.metadata["platform_segments"] == [{"platform": "Reference", "from_step": 0}]
    # the temperature of the continuation is the thermostat's (a broken restart would not hold it)
    kinetic = resumed.kinetic_energy[5:]
    assert 0.5 < np.mean(kinetic) / np.mean(whole.kinetic_energy[5:]) < 2.0


def _study(tmp_path: Path) -> Path:
    """A study folder of two prepared ethane references (the layout ``prepare_references`` writes)."""
    import yaml

    study = tmp_path / "study"
    for name, temperature in (("T280", "280 K"), ("T310", "310 K")):
        folder = study / name
        folder.mkdir(parents=True)
        settings = dict(ETHANE, temperature=temperature)
        (folder / "reference.yaml").write_text(yaml.safe_dump(settings))
        run_reference(settings, folder / "aa.h5", prepare_only=True)
    return study


@pytest.mark.slow
def test_run_elsewhere_and_ingest(tmp_path):
    tool = _tool()
    study = _study(tmp_path)
    remote = tmp_path / "gpu" / "study"
    shutil.copytree(study, remote)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "devtools" / "gpu_references.py"), "run", str(remote),
                           "--out", str(out), "--budget-s", "600"], capture_output=True, text=True, timeout=900,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert set(record["runs"]) == {"T280", "T310"}
    assert all(r["returncode"] == 0 and r["completed"] and r["frames"] == 13 for r in record["runs"].values())
    assert all(r["from"]["stage"] == "nvt" and r["to"]["stage"] == "done" for r in record["runs"].values())
    assert sorted(p.name for p in out.iterdir()) == ["T280.tar", "T310.tar", "run.json"]
    done = tool.ingest(study, out)
    assert all(d["completed"] for d in done.values())
    for name in ("T280", "T310"):
        here, there = open_dataset(study / name / "aa.h5"), open_dataset(remote / name / "aa.h5")
        np.testing.assert_array_equal(here.positions, there.positions)
        assert here.metadata["temperature_K"] == float(name[1:])
    # a finished study is not run again
    record = tool.run(remote, tmp_path / "out2", budget_s=60)
    assert record["runs"] == {}

    # a tar with anything else in it is refused before a file is written
    evil = tmp_path / "evil"
    evil.mkdir()
    (tmp_path / "payload.py").write_text("print('hi')\n")
    with tarfile.open(evil / "T280.tar", "w") as tar:
        tar.add(tmp_path / "payload.py", arcname="T280/../../payload.py")
    with pytest.raises(SystemExit, match="unexpected members"):
        tool.ingest(study, evil)
    # a checkpoint of another configuration (the 310 K run's, renamed) is refused, and the folder keeps its own
    renamed = evil / "T280.tar"
    with tarfile.open(out / "T310.tar") as src, tarfile.open(renamed, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m)
            m.name = m.name.replace("T310/", "T280/")
            dst.addfile(m, data)
    before = (study / "T280" / "aa.h5.chk").read_bytes()
    with pytest.raises(SystemExit, match="another configuration"):
        tool.ingest(study, evil)
    assert (study / "T280" / "aa.h5.chk").read_bytes() == before
    assert not list((study / "T280").glob(".*.ingest"))
    # a folder the study does not have
    (evil / "T280.tar").rename(evil / "T999.tar")
    with pytest.raises(SystemExit, match="no folder T999"):
        tool.ingest(study, evil)


def test_cgml_temperature_prepare_references(tmp_path):
    """``--prepare-references`` builds and minimises every temperature and stops: each folder holds its
    configuration and a checkpoint at the NVT stage, no dataset, and nothing of the later steps."""
    import yaml
    from test_temperature_study import tiny_config

    from openmm_cgml._checkpoint import read_checkpoint

    out = tmp_path / "study"
    config = tiny_config("temperature/tmp_two_cores.yaml", out)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "openmm_cgml.cli", "temperature", str(path), "--prepare-references",
                           "--quiet"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["T280", "T310", "T340"]
    for folder in out.iterdir():
        if not folder.is_dir():
            continue
        header, _ = read_checkpoint(folder / "aa.h5.chk")
        assert header["stage"] == "nvt" and header["payload"] == "state"
        assert not (folder / "aa.h5").exists()
        settings = yaml.safe_load((folder / "reference.yaml").read_text())
        assert settings["temperature"].startswith(folder.name[1:])
    assert not (out / "mapping.json").exists() and not (out / "summary.json").exists()
    assert "next stage: nvt" in proc.stdout


def test_a_binary_checkpoint_moves_to_another_platform_only_when_portable(tmp_path, monkeypatch):
    """A run (``platform: auto``) stopped mid-production on the CPU platform (OpenMM's binary checkpoint) resumes
    on a machine whose fastest platform is another (Reference here, a GPU's in use) only with
    ``portable_checkpoints``: its state is read on the CPU platform and moved over, the frames up to the checkpoint
    are kept, and the record says where each part ran.  Without it the error says which platform wrote the
    checkpoint and what to do."""
    import openmm

    import openmm_cgml.reference.run as run_module
    from openmm_cgml._checkpoint import read_checkpoint
    from openmm_cgml.exceptions import CheckpointError

    def fastest(name):  # what platform "auto" finds on each machine
        monkeypatch.setattr(run_module, "choose_platform", lambda _: openmm.Platform.getPlatformByName(name))

    on_cpu = elsewhere = dict(ETHANE, platform="auto", threads=1)
    fastest("CPU")
    whole = open_dataset(run_reference(on_cpu, tmp_path / "whole.h5").dataset)
    with pytest.raises(_Crash):  # dies after the 0.4 ps checkpoint
        run_reference(on_cpu, tmp_path / "cut.h5", reporters=[_CrashAfter(50, 6)])
    header, _ = read_checkpoint(tmp_path / "cut.h5.chk")
    assert header["payload"] == "checkpoint" and header["stage"] == "production"
    fastest("Reference")
    with pytest.raises(CheckpointError, match="written on the CPU platform and this run uses Reference.*"
                                              "portable_checkpoints=True"):
        run_reference(elsewhere, tmp_path / "cut.h5")
    resumed = open_dataset(run_reference(elsewhere, tmp_path / "cut.h5", portable_checkpoints=True).dataset)
    np.testing.assert_array_equal(resumed.step, whole.step)  # no gaps, no duplicates
    np.testing.assert_array_equal(resumed.positions[:5], whole.positions[:5])  # the frames before the checkpoint
    assert np.isfinite(resumed.positions).all() and resumed.metadata["completed"]
    assert resumed.metadata["platform_segments"] == [{"platform": "CPU", "from_step": 0},
                                                     {"platform": "Reference", "from_step": 200}]
    kinetic = resumed.kinetic_energy[5:]
    assert 0.5 < np.mean(kinetic) / np.mean(whole.kinetic_energy[5:]) < 2.0

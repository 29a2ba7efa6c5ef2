"""Kill and resume: reference runs, IBI and training interrupted right after their k-th checkpoint (an exception
raised just after the write, or a real SIGKILL of a subprocess) and rerun give the uninterrupted result; the
one resume policy (resume / overwrite / the checkpoint found); reference runs reproducible from one process to
the next on the CPU platform with one thread."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _cg_fluid import simulate_known_fluid
from _neural_helpers import _one_torch_thread  # noqa: F401  (autouse fixture)

from openmm_cgml._checkpoint import (
    identity_differences,
    identity_hash,
    read_checkpoint,
    resume_or_start,
    write_checkpoint,
)
from openmm_cgml.cli import main
from openmm_cgml.dataset import open_dataset
from openmm_cgml.exceptions import CheckpointError
from openmm_cgml.ibi import IterativeBoltzmannInversion
from openmm_cgml.testing import requires_openff
from openmm_cgml.training import ForceMatchingTrainer
from openmm_cgml.workflows.ibi import IBIConfig, run_ibi
from openmm_cgml.workflows.train import TrainConfig, run_train

ROOT = Path(__file__).resolve().parents[1]


class _Killed(Exception):
    """Stands for the process dying right after a checkpoint write."""


def _kill_after(monkeypatch, owner, name: str, k: int) -> list:
    """Make ``owner.name`` (a checkpoint writer) raise :class:`_Killed` right after its ``k``-th call returns."""
    original = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == k:
            raise _Killed(f"killed after checkpoint write {k}")
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def _sigkill_when(cmd: list[str], ready, timeout: float = 240.0) -> dict:
    """Run ``cmd`` (in the repository root) and SIGKILL it as soon as ``ready(checkpoint header)`` holds; returns
    that header.  Fails if the process ends on its own first."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            header = ready()
            if header is not None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return header
            if proc.poll() is not None:
                pytest.fail(f"the process ended (exit {proc.returncode}) before it could be killed: "
                            f"{proc.stderr.read()[-2000:]}")
            time.sleep(0.005)
        pytest.fail("the checkpoint never reached the state to kill at")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _header_if(path: Path, condition):
    if not path.exists():
        return None
    header, _ = read_checkpoint(path)
    return header if condition(header) else None


# ---------------------------------------------------------------------------------------------- the policy
def test_resume_policy(tmp_path, caplog):
    """none -> fresh; same job -> resume; other job -> refused naming the keys; resume off -> refused;
    overwrite -> fresh whatever is there (saying why)."""
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    path = tmp_path / "job.chk"
    identity = {"settings": {"cutoff": 1.0, "seed": 3}, "model": {"args": {"hidden": 8}}}
    assert resume_or_start(path, identity) is None
    assert f"no checkpoint at {path}: starting fresh" in caplog.text
    write_checkpoint(path, {"identity": identity_hash(identity), "identity_data": identity, "epoch": 4}, b"state")
    header, payload = resume_or_start(path, identity)
    assert header["epoch"] == 4 and payload == b"state"
    other = {"settings": {"cutoff": 1.2, "seed": 3}, "model": {"args": {"hidden": 8, "extra": 1}}}
    assert identity_differences(identity, other) == ["model.args.extra", "settings.cutoff"]
    with pytest.raises(CheckpointError, match=rf"{path} belongs to a different job \(these settings differ: "
                                              r"model\.args\.extra, settings\.cutoff\); pass --overwrite"):
        resume_or_start(path, other, what="job")
    with pytest.raises(CheckpointError, match=rf"{path} exists but resuming is off.*pass --overwrite"):
        resume_or_start(path, identity, resume=False)
    for resume in (True, False):
        caplog.clear()
        assert resume_or_start(path, other, resume=resume, overwrite=True) is None
        assert (f"overwriting checkpoint {path} (configuration changed: model.args.extra, settings.cutoff)"
                in caplog.text)
    caplog.clear()
    assert resume_or_start(path, identity, overwrite=True) is None
    assert "(overwrite requested; same configuration)" in caplog.text
    # a header without the identity's data (an older checkpoint) is still recognised, and refused without names
    write_checkpoint(path, {"config_key": identity_hash(identity)}, b"")
    assert resume_or_start(path, identity) is not None
    with pytest.raises(CheckpointError, match="its settings, inputs or system differ"):
        resume_or_start(path, other)
    path.write_bytes(b"CGMLCKPT1\n garbage")
    with pytest.raises(CheckpointError, match="corrupt.*--overwrite"):
        resume_or_start(path, identity)
    caplog.clear()
    assert resume_or_start(path, identity, overwrite=True) is None
    assert "(it is unreadable)" in caplog.text


# -------------------------------------------------------------------------------------------------- training
def _train_yaml(tmp_path: Path, data: Path, hidden: int = 8, extra: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "train.yaml"
    path.write_text(f"""
dataset: {data}
output: {tmp_path / "run"}
temperature: "300 K"
model: {{hidden: {hidden}, n_rbf: 8, n_interactions: 1, intra_cutoff: "0.5 nm", inter_cutoff: "0.9 nm"}}
priors:
  repulsion: {{sigma: "0.3 nm", exponent: 12, cutoff: "0.5 nm"}}
  harmonic_bond: {{A-B: {{r0: "0.3 nm", k: "4000 kJ/mol/nm**2"}}}}
training: {{epochs: 4, batch_size: 4, progress: false, seed: 5, position_noise: "0.002 nm"}}
{extra}""")
    return path


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    return simulate_known_fluid(tmp_path_factory.mktemp("train") / "fluid.h5", n_frames=16, interval=20)


def test_training_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(train_data, tmp_path, monkeypatch,
                                                                               caplog):
    from openmm_cgml.config import load_config

    whole = run_train(load_config(_train_yaml(tmp_path / "whole", train_data), TrainConfig))
    config = load_config(_train_yaml(tmp_path / "cut", train_data), TrainConfig)
    assert config.resume and not config.overwrite  # the defaults
    _kill_after(monkeypatch, ForceMatchingTrainer, "_save_checkpoint", 2)
    with pytest.raises(_Killed):
        run_train(config)
    monkeypatch.undo()
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    resumed = run_train(config)
    assert f"resumed from epoch 2 of 4 (checkpoint {tmp_path / 'cut' / 'run' / 'checkpoint.chk'})" in caplog.text
    assert resumed.history == [dict(h, seconds=r["seconds"]) for h, r in zip(whole.history, resumed.history)]
    assert len(resumed.history) == 4
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_train_command_refuses_a_changed_configuration_unless_overwrite(train_data, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    checkpoint = tmp_path / "run" / "checkpoint.chk"
    assert main(["train", str(_train_yaml(tmp_path, train_data))]) == 0
    assert f"no checkpoint at {checkpoint}: starting fresh" in caplog.text
    assert main(["train", str(_train_yaml(tmp_path, train_data))]) == 0  # finished: resumes at its end
    assert f"resumed from epoch 4 of 4 (checkpoint {checkpoint})" in caplog.text
    capsys.readouterr()
    assert main(["train", str(_train_yaml(tmp_path, train_data, hidden=12))]) == 1
    err = capsys.readouterr().err
    assert f"{checkpoint} belongs to a different training run" in err
    assert "these settings differ: model.args.hidden" in err and "--overwrite" in err
    assert main(["train", str(_train_yaml(tmp_path, train_data, extra="resume: false"))]) == 1
    assert "exists but resuming is off" in capsys.readouterr().err
    caplog.clear()
    assert main(["train", str(_train_yaml(tmp_path, train_data, hidden=12)), "--overwrite"]) == 0
    assert f"overwriting checkpoint {checkpoint} (configuration changed: model.args.hidden)" in caplog.text
    header, _ = read_checkpoint(checkpoint)
    assert header["identity_data"]["model"]["args"]["hidden"] == 12 and header["epoch"] == 4
    assert main(["train", str(_train_yaml(tmp_path, train_data, hidden=12, extra="overwrite: true"))]) == 0


# ------------------------------------------------------------------------------------------------------- IBI
@pytest.fixture(scope="module")
def dimer_data(tmp_path_factory):
    """A-B dimers (LJ + harmonic bonds), coarse-grained: the pairs and the bond IBI iterates."""
    return simulate_known_fluid(tmp_path_factory.mktemp("ibi") / "dimers.h5", n_frames=40, interval=20)


def _ibi_config(data: Path, out: Path, **extra) -> dict:
    return {"cg_dataset": str(data), "output_dir": str(out), "temperature": "300 K", "cutoff": "0.9 nm",
            "timestep": "4 fs", "friction": "5 /ps", "max_iterations": 4, "equilibration_steps": 20,
            "production_steps": 100, "sample_interval": 20, "tolerance": 1e-6, "bonded": "harmonic", **extra}


def _same_ibi(a, b) -> None:
    """Bit-identical IBI results: every iteration's RDF errors, pressures and temperatures, and the potentials,
    RDFs and bonded terms of the best iteration."""
    assert a.history == b.history
    assert a.best_iteration == b.best_iteration
    for pair in a.potentials:
        np.testing.assert_array_equal(a.potentials[pair], b.potentials[pair])
        np.testing.assert_array_equal(a.rdfs[pair], b.rdfs[pair])
    assert [t.to_data() for t in a.bonded_terms] == [t.to_data() for t in b.bonded_terms]


@pytest.mark.parametrize("platform, refine", [("Reference", False), ("CPU", True)])
def test_ibi_killed_after_a_checkpoint_resumes_exactly(dimer_data, tmp_path, monkeypatch, caplog, platform, refine):
    """The Context's OpenMM checkpoint (positions, velocities, random-number state) is resumed, not reseeded: the
    iterations after the kill are those of the uninterrupted run, bit for bit.  With ``refine_bonded`` the Context
    is rebuilt (new bonded terms, new seed) every iteration."""
    extra = {"platform": platform, "refine_bonded": refine, **({"threads": 1} if platform == "CPU" else {})}
    whole = run_ibi(_ibi_config(dimer_data, tmp_path / "whole", **extra)).result
    assert len(whole.history) == 4
    _kill_after(monkeypatch, IterativeBoltzmannInversion, "_save", 2)
    with pytest.raises(_Killed):
        run_ibi(_ibi_config(dimer_data, tmp_path / "cut", **extra))
    monkeypatch.undo()
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    resumed = run_ibi(_ibi_config(dimer_data, tmp_path / "cut", **extra)).result
    assert f"resumed from iteration 2 of 4 (checkpoint {tmp_path / 'cut' / 'ibi_checkpoint.chk'})" in caplog.text
    _same_ibi(whole, resumed)
    for name in ("pair_tables.json", "bonded_terms.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name


def test_ibi_resume_without_the_context_checkpoint_continues_and_says_so(dimer_data, tmp_path, monkeypatch, caplog):
    """A checkpoint without OpenMM's Context checkpoint (an earlier version's), or one the platform cannot load
    (another platform), resumes from positions and velocities, with a warning that it is not bitwise."""
    config = _ibi_config(dimer_data, tmp_path / "cut", platform="Reference")
    _kill_after(monkeypatch, IterativeBoltzmannInversion, "_save", 2)
    with pytest.raises(_Killed):
        run_ibi(config)
    monkeypatch.undo()
    path = tmp_path / "cut" / "ibi_checkpoint.chk"
    saved = path.read_bytes()
    header, payload = read_checkpoint(path)
    with np.load(io.BytesIO(payload)) as z:
        arrays = {k: z[k] for k in z.files if k != "context"}
    assert "context" in np.load(io.BytesIO(payload)).files
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_checkpoint(path, {k: v for k, v in header.items() if k != "payload_sha256"}, buf.getvalue())
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    assert len(run_ibi(config).result.history) == 4
    assert "written by an earlier version" in caplog.text and "not bitwise" in caplog.text
    path.write_bytes(saved)
    caplog.clear()
    assert len(run_ibi(dict(config, platform="CPU", threads=1)).result.history) == 4  # platform may change
    assert "OpenMM cannot load its Context checkpoint" in caplog.text


def test_ibi_process_killed_with_sigkill_resumes_exactly(dimer_data, tmp_path):
    longer = {"platform": "CPU", "threads": 1, "max_iterations": 6, "production_steps": 400}
    whole = run_ibi(_ibi_config(dimer_data, tmp_path / "whole", **longer)).result
    config = _ibi_config(dimer_data, tmp_path / "cut", **longer)
    code = "import json, sys; from openmm_cgml.workflows.ibi import run_ibi; run_ibi(json.loads(sys.argv[1]))"
    path = tmp_path / "cut" / "ibi_checkpoint.chk"
    header = _sigkill_when([sys.executable, "-c", code, json.dumps(config)],
                           lambda: _header_if(path, lambda h: len(h["meta"]["history"]) >= 2))
    assert len(header["meta"]["history"]) < 6  # killed mid-run
    assert not (tmp_path / "cut" / "pair_tables.json").exists()
    _same_ibi(whole, run_ibi(config).result)


def test_ibi_command_overwrite(dimer_data, tmp_path, capsys, caplog):
    import yaml

    config = _ibi_config(dimer_data, tmp_path / "ibi", platform="Reference", max_iterations=2)
    (tmp_path / "ibi.yaml").write_text(yaml.safe_dump(config))
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 0
    (tmp_path / "ibi.yaml").write_text(yaml.safe_dump(dict(config, damping=0.5)))
    capsys.readouterr()
    assert main(["ibi", str(tmp_path / "ibi.yaml")]) == 1
    err = capsys.readouterr().err
    assert "belongs to a different IBI run (these settings differ: settings.damping)" in err and "--overwrite" in err
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    assert main(["ibi", str(tmp_path / "ibi.yaml"), "--overwrite"]) == 0
    assert "(configuration changed: settings.damping)" in caplog.text
    recorded = yaml.safe_load((tmp_path / "ibi" / "config.yaml").read_text())
    assert recorded["damping"] == 0.5 and "overwrite" not in recorded  # rerunning the record resumes
    assert IBIConfig.from_data(recorded).resume


# ------------------------------------------------------------------------------------------ reference runs
ETHANE = dict(
    components=[dict(smiles="CC", count=24, name="ETH")], density="0.40 g/cm**3", cutoff="0.6 nm",
    charge_method="gasteiger", nvt="0.2 ps", npt="0.2 ps", production="1.2 ps", report_interval="0.1 ps",
    checkpoint_interval="0.4 ps", platform="Reference", precision="double",
)


@pytest.fixture(scope="module")
def whole_reference(tmp_path_factory):
    from openmm_cgml.reference import run_reference

    return open_dataset(run_reference(ETHANE, tmp_path_factory.mktemp("ref") / "whole.h5").dataset)


def _same_dataset(a, b) -> None:
    np.testing.assert_array_equal(a.step, b.step)
    for name in ("positions", "velocities", "forces", "box", "potential_energy"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.metadata["npt_density_series_g_cm3"] == b.metadata["npt_density_series_g_cm3"]


@requires_openff
@pytest.mark.parametrize("k, stage", [(2, "nvt"), (5, "npt"), (8, "production")])
def test_reference_killed_after_a_checkpoint_resumes_exactly(whole_reference, tmp_path, monkeypatch, caplog, k, stage):
    """Writes: 1 packed start, 2 minimised, 3 NVT, 4 -> NPT, 5 NPT, 6 -> production, 7-9 production, 10 done."""
    import openmm_cgml.reference.run as run_module
    from openmm_cgml.reference import run_reference

    _kill_after(monkeypatch, run_module, "write_checkpoint", k)
    with pytest.raises(_Killed):
        run_reference(ETHANE, tmp_path / "cut.h5")
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "cut.h5.chk")[0]["stage"] == stage
    caplog.set_level(logging.INFO, logger="openmm_cgml")
    resumed = run_reference(ETHANE, tmp_path / "cut.h5")
    assert f"resumed from stage {stage}, " in caplog.text and f"of 13 frames (checkpoint {tmp_path / 'cut.h5.chk'})" \
        in caplog.text
    _same_dataset(whole_reference, open_dataset(resumed.dataset))


@requires_openff
def test_reference_process_killed_with_sigkill_resumes_exactly(whole_reference, tmp_path):
    from openmm_cgml.reference import run_reference

    out = tmp_path / "cut.h5"
    code = ("import json, sys; from openmm_cgml.reference import run_reference; "
            "run_reference(json.loads(sys.argv[1]), sys.argv[2])")
    header = _sigkill_when([sys.executable, "-c", code, json.dumps(ETHANE), str(out)],
                           lambda: _header_if(Path(str(out) + ".chk"),
                                              lambda h: h["stage"] == "production" and h["n_frames"] > 0))
    assert header["n_frames"] < 13
    _same_dataset(whole_reference, open_dataset(run_reference(ETHANE, out).dataset))


@requires_openff
def test_reference_runs_on_one_cpu_thread_are_identical_from_process_to_process(tmp_path):
    """Two processes, one configuration, the CPU platform with ``threads: 1`` (and DeterministicForces): every
    recorded number is the same.  (With more threads they are not: docs/guide/reference.md.)"""
    config = dict(ETHANE, platform="CPU", threads=1, production="0.4 ps")
    code = ("import json, sys; from openmm_cgml.reference import run_reference; "
            "run_reference(json.loads(sys.argv[1]), sys.argv[2])")
    for name in ("a.h5", "b.h5"):
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(config), str(tmp_path / name)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = open_dataset(tmp_path / "a.h5"), open_dataset(tmp_path / "b.h5")
    assert a.n_frames == 5
    assert (tmp_path / "a.pdb").read_bytes() == (tmp_path / "b.pdb").read_bytes()
    assert (tmp_path / "a.system.xml").read_bytes() == (tmp_path / "b.system.xml").read_bytes()
    _same_dataset(a, b)
    assert a.metadata["platform"]["name"] == "CPU"
    assert a.metadata["platform"]["properties"] == {"Threads": "1", "DeterministicForces": "true"}

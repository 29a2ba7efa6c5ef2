"""benchmarks/bench_gpu.py: the cheap skip without CUDA, and its helpers on the CPU at a tiny size."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_gpu  # noqa: E402

from openmm_cgml.forces import compiled  # noqa: E402

#: the compiled-layout arm, timed where the C++ plugin builds
COMPILED = ("tabulated_compiled",) if compiled.available() else ()


@pytest.fixture
def one_thread():
    """Torch on one thread (the CPU stand-ins of the GPU arms share a busy machine with OpenMM)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(tmp_path, *args):
    env = {**os.environ, "CGML_BENCH_RESULTS": str(tmp_path / "results")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)


def test_without_cuda_it_skips_quickly_and_writes_nothing(tmp_path):
    if bench_gpu.probe()["cuda"]:
        pytest.skip("this machine has a CUDA device: the benchmark would run for real")
    proc = _run(tmp_path, "--sizes", "1000", "--steps", "10", "--rounds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert bench_gpu.SKIP_MESSAGE in proc.stdout
    assert "no CUDA platform/device: skipped" in proc.stdout
    results = tmp_path / "results"
    assert not results.exists() or not any(results.iterdir())


def test_platform_check_only_prints_what_it_found(tmp_path):
    proc = _run(tmp_path, "--platform-check-only")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    assert {"openmm", "openmm_platforms", "cuda", "torch", "openmm_torch"} <= set(found)
    assert "CPU" in found["openmm_platforms"] or "Reference" in found["openmm_platforms"]
    if not found["cuda"]:
        assert found["reason"] and bench_gpu.SKIP_MESSAGE in proc.stdout
    assert not (tmp_path / "results").exists()


def test_bad_options_are_refused(tmp_path):
    proc = _run(tmp_path, "--sizes", "2")
    assert proc.returncode == 2 and "at least 3 beads" in proc.stderr


def test_small_helpers():
    assert bench_gpu.molecules(1000) == 333 and bench_gpu.molecules(100_000) == 33_333 and bench_gpu.molecules(1) == 1
    # 5 fs per step at 1 ms per step: 5e-6 ns * 86400 s/day / 1e-3 s
    assert bench_gpu.ns_per_day(1e-3) == pytest.approx(432.0)
    assert bench_gpu.ns_per_day(1e-3, dt_fs=10.0) == pytest.approx(864.0)
    assert bench_gpu.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert bench_gpu.is_out_of_memory(Exception("Error: CUDA_ERROR_OUT_OF_MEMORY (2)"))
    assert not bench_gpu.is_out_of_memory(RuntimeError("operation not permitted when stream is capturing"))
    assert bench_gpu.is_out_of_memory(MemoryError())
    assert bench_gpu.trainer_supports_device() in (True, False)


def test_neural_system_builds_and_gives_a_finite_energy(tmp_path, one_thread):
    system, positions, info = bench_gpu.neural_system(192, tmp_path)
    assert system.getNumParticles() == 192 == len(positions) == info.n_beads
    names = {system.getForce(i).getName() for i in range(system.getNumForces())}
    assert "neural:network" in names  # the TorchForce, priors beside it as OpenMM forces
    from openmm import unit

    box = [v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()]
    edge = float(info.box_vectors[0][0])
    assert box[0][0] == pytest.approx(edge) and box[1][1] == pytest.approx(edge) and box[2][2] == pytest.approx(edge)
    assert 10.5 < 192 / edge**3 < 12.0  # beads per nm^3: the liquid's density
    assert (tmp_path / "bench_gpu_192.cgml").exists()
    context, integrator = bench_gpu.make_context(system, positions, "CPU", minimise=False)
    assert math.isfinite(bench_gpu.potential_energy(context))
    integrator.step(2)
    assert math.isfinite(bench_gpu.potential_energy(context))


@pytest.fixture
def gpu_like(monkeypatch):
    """"auto" as on a machine with a GPU platform: the custom-force layouts, not the compiled (host) force."""
    from openmm_cgml.forces import tabulated

    monkeypatch.setattr(tabulated, "_compiled_preferred", lambda: False)


def test_tabulated_systems_default_and_slot_agree(one_thread, gpu_like):
    topology, positions, systems, layout = bench_gpu.tabulated_systems(192)
    assert layout == "groups"  # "auto" at 192 beads
    assert {s.getNumParticles() for s in systems.values()} == {192} and len(positions) == 192
    energies = {k: bench_gpu.potential_energy(bench_gpu.make_context(s, positions, "Reference", minimise=False)[0])
                for k, s in systems.items()}
    assert math.isfinite(energies["default"])
    assert energies["default"] == pytest.approx(energies["slot"], rel=1e-5, abs=1e-3)
    if compiled.available():  # the C++ pair force: the same splines
        assert energies["compiled"] == pytest.approx(energies["slot"], rel=1e-5, abs=1e-3)
    assert bench_gpu.tabulated_systems(1002)[3] == "slot"  # beyond GROUP_LAYOUT_MAX_BEADS


def test_bench_size_on_the_cpu(tmp_path, one_thread, gpu_like):
    """The GPU benchmark's timing of one size, run on the CPU platform as a stand-in: every arm timed."""
    row, errors = bench_gpu.bench_size(192, 2, 1, tmp_path, None, platform="CPU")
    assert errors == {}, errors
    assert set(row["arms"]) == {"neural_graphs_off", "neural_graphs_on", "tabulated_default", "tabulated_slot",
                                *COMPILED}
    assert row.get("compiled_on_device") is (False if COMPILED else None)  # the CPU platform runs the host kernel
    for arm in row["arms"].values():
        assert arm["ns_per_day"] > 0 and arm["finite_energy"]
        lo, hi = arm["ns_per_day_spread"]
        assert lo <= arm["ns_per_day"] <= hi
    assert row["beads"] == 192 and row["default_layout"] == "groups"
    assert {"cuda_graphs_speedup", "default_over_slot", "neural_over_tabulated", "load_average"} <= set(row)


def test_bench_size_records_out_of_memory_as_a_skip_and_graph_failures(tmp_path, monkeypatch, one_thread):
    def no_memory(n_beads, workdir, *, use_cuda_graphs=False):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(bench_gpu, "neural_system", no_memory)
    row, errors = bench_gpu.bench_size(192, 2, 1, tmp_path, None, platform="CPU")
    assert errors == {}
    assert "out of memory" in row["skipped"]["neural_graphs_off"]
    assert "out of memory" in row["skipped"]["neural_graphs_on"]
    assert set(row["arms"]) == {"tabulated_default", "tabulated_slot"}  # "auto" is the compiled layout here

    _, positions, systems, _ = bench_gpu.tabulated_systems(192)

    def no_graphs(n_beads, workdir, *, use_cuda_graphs=False):  # a stand-in model that cannot be captured
        if use_cuda_graphs:
            raise RuntimeError("operation not permitted when stream is capturing")
        return systems["slot"], positions, None

    monkeypatch.setattr(bench_gpu, "neural_system", no_graphs)
    row, errors = bench_gpu.bench_size(192, 2, 1, tmp_path, None, platform="CPU")
    assert errors == {}
    assert "stream is capturing" in row["unsupported"]["neural_graphs_on"]
    assert "neural_graphs_off" in row["arms"]

    def broken(n_beads, workdir, *, use_cuda_graphs=False):
        raise RuntimeError("No registered kernel factory for TorchForce")

    monkeypatch.setattr(bench_gpu, "neural_system", broken)
    row, errors = bench_gpu.bench_size(192, 2, 1, tmp_path, "torch has no CUDA", platform="CPU")
    assert errors == {} and row["skipped"]["neural_graphs_on"] == "torch has no CUDA"
    row, errors = bench_gpu.bench_size(192, 2, 1, tmp_path, None, platform="CPU")
    assert set(errors) == {"neural_graphs_off", "neural_graphs_on"}
    assert "kernel factory" in row["errors"]["neural_graphs_off"]


def test_training_epoch_on_the_cpu(one_thread):
    """The training arm's maths on the CPU device (on a GPU machine the same runs on CUDA tensors)."""
    out, errors = bench_gpu.bench_training([192], 1, devices=("cpu",), frames=2, batch=1)
    assert errors == {}
    row = out["192"]
    assert row["beads_per_frame"] == 192 and row["frames"] == 2 and row["pairs_per_frame"] > 0
    assert row["cpu_frames_per_s"] > 0


def test_main_on_a_pretend_cuda_machine_writes_the_result(tmp_path, monkeypatch, one_thread):
    """main()'s whole flow with the CUDA platform stood in for by the CPU one (the probe says CUDA is there)."""
    import _common

    found = {"openmm": "x", "openmm_platforms": ["Reference", "CPU", "CUDA"], "openmm_plugin_load_failures": [],
             "cuda": True, "openmm_cuda_properties": {"DeviceName": "Pretend GPU", "Precision": "mixed"},
             "nvidia_smi": {"gpus": [{"name": "Pretend GPU", "driver_version": "1.0"}]},
             "torch": {"available": True, "version": "x", "cuda_runtime": "x"}, "openmm_torch": "x",
             "nnpops_available": False}
    real_size, real_training = bench_gpu.bench_size, bench_gpu.bench_training
    monkeypatch.setattr(bench_gpu, "probe", lambda full=False: found)
    monkeypatch.setattr(bench_gpu, "bench_size", lambda *a, **k: real_size(*a, **k, platform="CPU"))
    monkeypatch.setattr(bench_gpu, "bench_training",
                        lambda beads, rounds: real_training(beads, rounds, devices=("cpu",), frames=2, batch=1))
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    assert bench_gpu.main(["--sizes", "192", "--steps", "2", "--rounds", "1", "--train-beads", "192"]) == 0
    result = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert result["benchmark"] == "bench_gpu" and result["figures"]["errors"] == {}
    assert set(result["figures"]["sizes"]["192"]["arms"]) == {"neural_graphs_off", "neural_graphs_on",
                                                             "tabulated_default", "tabulated_slot"}
    assert result["figures"]["training"]["192"]["cpu_frames_per_s"] > 0
    settings = result["settings"]
    assert settings["gpu"]["openmm_cuda_properties"]["DeviceName"] == "Pretend GPU"
    assert "untrained" in settings["neural_model"] and "takes no device" in settings["training"]
    assert "torch" in result["versions"] and "openmm" in result["versions"]

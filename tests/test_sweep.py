"""Parameter sweeps (openmm_cgml.sweep): the definition, the design, the fast family's force field, and sweeps of
tiny samples on Dask (idempotent reruns, interrupted sweeps, failing samples, a killed worker, the index)."""

from __future__ import annotations

import json
from pathlib import Path

import _sweep_helpers as helpers
import numpy as np
import pytest

from openmm_cgml.exceptions import ConfigurationError, DatasetError
from openmm_cgml.sweep import SweepConfig, generate_samples, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, **overrides) -> SweepConfig:
    return SweepConfig.from_data(helpers.tiny_sweep(tmp_path / "sweep", **overrides))


# ------------------------------------------------------------------------------------------ definition
@pytest.mark.parametrize("change, words", [
    ({"parameters": [{"handler": "Bonds", "attribute": "stiffness", "factor": [0.5, 2]}]}, ["stiffness", "k"]),
    ({"parameters": [{"handler": "Bonds", "attribute": "k", "factor": [2, 0.5]}]}, ["factor", "low < high"]),
    ({"parameters": [{"handler": "Bonds", "attribute": "k"}]}, ["exactly one of range"]),
    ({"parameters": [{"handler": "Bonds", "attribute": "length", "range": ["0.15", "0.16 nm"]}]}, ["no unit"]),
    ({"parameters": [{"handler": "Angles", "attribute": "angle", "range": ["110 nm", "115 nm"]}]}, ["degree"]),
    ({"parameters": [{"handler": "vdW", "attribute": "epsilon", "site": "CH9", "factor": [0.8, 1.2]}]},
     ["parameters.0", "site"]),
    ({"parameters": [{"handler": "Bonds", "attribute": "k", "smirks": "[#6:1]-[#6:2]", "factor": [0.8, 1.2]}]},
     ["smirks", "united-atom"]),
    ({"molecule": {"sites": ["CH3", "XX"], "bonds": [[0, 1]]}}, ["molecule", "XX"]),
    ({"molecule": {"sites": ["CH3", "CH3", "CH3"], "bonds": [[0, 1]]}}, ["one molecule"]),
    ({"sampling": {"method": "sobol"}}, ["sampling.method"]),
    ({"temperatures": ["300"]}, ["temperatures", "unit"]),
    ({"pipeline": {"ibi": {"max_iteration": 3}}}, ["max_iteration"]),
    ({"pipeline": {"ibi": {"temperature": "300 K"}}}, ["temperature", "set by the sweep"]),
    ({"pipeline": {"aa": {"npt": "10 ps"}}}, ["npt", "openff"]),
    ({"colour": "red"}, ["colour", "unknown key"]),
])
def test_bad_definitions_are_refused_with_the_key(tmp_path, change, words):
    data = helpers.tiny_sweep(tmp_path)
    for key, value in change.items():
        if key in ("molecule", "pipeline") and isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(ConfigurationError) as exc:
        SweepConfig.from_data(data)
    for word in words:
        assert word in str(exc.value), str(exc.value)


def test_openff_parameters_need_smirks_in_the_force_field(tmp_path):
    pytest.importorskip("openff.toolkit")
    data = helpers.tiny_sweep(tmp_path, family="openff", molecule={})
    data["molecule"] = {"smiles": "CC(C)C(C)C(C)C"}
    data["parameters"] = [{"handler": "Bonds", "smirks": "[#6X4:1]-[#6X4:2]", "attribute": "k", "factor": [0.9, 1.1],
                           "name": "k_cc"},
                          {"handler": "Bonds", "smirks": "[#99:1]-[#6:2]", "attribute": "k", "factor": [0.9, 1.1],
                           "name": "k_x"}]
    config = SweepConfig.from_data(data)  # the force field is read when the samples are made
    with pytest.raises(ConfigurationError, match=r"parameters\.1.*\[#99:1\]-\[#6:2\]"):
        generate_samples(config)


def test_latin_hypercube_is_seeded_and_stratifies_every_range(tmp_path):
    config = _config(tmp_path, sampling={"n_samples": 20, "seed": 7})
    samples = generate_samples(config)
    assert [s.sample_id for s in samples] == [s.sample_id for s in generate_samples(config)]
    other = generate_samples(_config(tmp_path, sampling={"n_samples": 20, "seed": 8}))
    assert {s.sample_id for s in samples}.isdisjoint({s.sample_id for s in other})
    lo_k, hi_k = 0.5 * 250000.0, 2.0 * 250000.0
    k = np.array([s.parameters["bonds_k"] for s in samples])
    eps = np.array([s.parameters["vdw_epsilon_CH3"] for s in samples])
    for values, lo, hi in ((k, lo_k, hi_k), (eps, 0.8 * 0.8148, 1.2 * 0.8148)):
        assert values.min() >= lo and values.max() <= hi
        strata = np.floor((values - lo) / (hi - lo) * 20).astype(int)
        assert sorted(strata) == list(range(20))  # one sample in each twentieth of the range
    random = generate_samples(_config(tmp_path, sampling={"method": "random", "n_samples": 20, "seed": 7}))
    grown = generate_samples(_config(tmp_path, sampling={"method": "random", "n_samples": 25, "seed": 7}))
    assert [s.sample_id for s in grown[:20]] == [s.sample_id for s in random]  # random designs extend


def test_temperatures_multiply_the_samples(tmp_path):
    config = _config(tmp_path, temperatures=["280 K", "320 K"])
    samples = generate_samples(config)
    assert len(samples) == 6 and len({s.sample_id for s in samples}) == 6
    assert [s.temperature for s in samples[:2]] == pytest.approx([280.0, 320.0])
    assert samples[0].parameters == samples[1].parameters


def test_the_fast_family_system_carries_the_sampled_parameters(tmp_path):
    import openmm

    from openmm_cgml.sweep.family import united_atom_box

    config = _config(tmp_path, parameters=[
        {"handler": "Bonds", "attribute": "k", "range": ["100000 kJ/mol/nm**2", "400000 kJ/mol/nm**2"]},
        {"handler": "Bonds", "attribute": "length", "range": ["1.50 angstrom", "1.60 angstrom"]},
        {"handler": "Angles", "attribute": "angle", "range": ["105 degree", "118 degree"]},
        {"handler": "ProperTorsions", "attribute": "k1", "range": ["1 kJ/mol", "8 kJ/mol"]},
        {"handler": "vdW", "site": "CH2", "attribute": "sigma", "range": ["0.38 nm", "0.41 nm"]}])
    sample = generate_samples(config)[1]
    p = sample.parameters
    box = united_atom_box(config, p, seed=1)
    forces = {type(f).__name__: f for f in box.system.getForces()}
    r0, k = forces["HarmonicBondForce"].getBondParameters(0)[2:]
    assert k.value_in_unit(k.unit) == pytest.approx(p["bonds_k"])
    assert r0.value_in_unit(r0.unit) == pytest.approx(p["bonds_length"])
    theta = forces["HarmonicAngleForce"].getAngleParameters(0)[3]
    assert np.degrees(theta.value_in_unit(theta.unit)) == pytest.approx(p["angles_angle"])
    assert forces["PeriodicTorsionForce"].getTorsionParameters(0)[6].value_in_unit(
        openmm.unit.kilojoule_per_mole) == pytest.approx(p["propertorsions_k1"])
    nb = forces["NonbondedForce"]
    ch2 = box.topology._chains[0]._residues[0]._atoms[3].index  # site 3 of the default molecule is CH2
    assert nb.getParticleParameters(ch2)[1].value_in_unit(openmm.unit.nanometer) == pytest.approx(p["vdw_sigma_CH2"])
    # 27 molecules x (4 bonds, 4 angles, 2 torsions); exclusions for 1-2 and 1-3, scaled 1-4 pairs
    assert forces["HarmonicBondForce"].getNumBonds() == 27 * 4
    assert forces["HarmonicAngleForce"].getNumAngles() == 27 * 4
    assert forces["PeriodicTorsionForce"].getNumTorsions() == 27 * 2
    assert nb.getNumExceptions() == 27 * (4 + 4 + 2)
    # minimised: no LJ overlap left
    state = openmm.Context(box.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    state.setPositions(box.positions)
    assert state.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole) < 0


def test_openff_parameters_reach_the_system(tmp_path):
    """The sampled SMIRKS values are in the force field's handler and in the OpenMM System built from it."""
    pytest.importorskip("openff.toolkit")
    import openmm

    from openmm_cgml.reference.liquid import Component, build_liquid, forcefield_parameter_value, load_forcefield

    smirks = "[#6X4:1]-[#6X4:2]"
    ff = load_forcefield("openff-2.2.0")
    k0 = forcefield_parameter_value(ff, "Bonds", smirks, "k", "kJ/mol/nm**2")
    liquid = build_liquid([Component("CC", 16)], density="0.3 g/cm**3", charge_method="zeros", cutoff="0.6 nm",
                          parameters=[{"handler": "Bonds", "smirks": smirks, "attribute": "k",
                                       "value": f"{1.5 * k0} kJ/mol/nm**2"}])
    bonds = next(f for f in liquid.system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    ks = {}
    for i in range(bonds.getNumBonds()):
        a, b, _, k = bonds.getBondParameters(i)
        heavy = all(liquid.system.getParticleMass(i).value_in_unit(openmm.unit.dalton) > 2 for i in (a, b))
        ks.setdefault(heavy, set()).add(round(k.value_in_unit(k.unit), 3))
    assert ks[True] == {round(1.5 * k0, 3)}
    assert liquid.info["forcefield_parameters"][0]["smirks"] == smirks


# ---------------------------------------------------------------------------------------------- sweeps
def _mtimes(directory: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(directory.glob("samples/*/result.json"))}


def test_a_sweep_runs_writes_its_index_and_a_rerun_is_a_no_op(tmp_path):
    import pandas as pd

    config = _config(tmp_path)
    out = tmp_path / "sweep"
    starts = tmp_path / "starts.txt"
    first = run_sweep(config, out, hook=helpers.CountStarts(starts))
    assert (first.computed, first.failed, first.skipped) == (3, 0, 0)
    index = pd.read_csv(out / "index.csv")
    assert list(index["status"]) == ["done"] * 3
    assert {"bonds_k", "vdw_epsilon_CH3", "D_AA", "D_AA_err", "D_CG", "D_CG_err", "alpha", "alpha_err",
            "rdf_error", "D_AA_converged", "D_CG_converged", "ibi_converged", "wall_s"} <= set(index.columns)
    assert (index["D_AA"] > 0).all() and (index["D_CG"] > 0).all()
    assert (index["wall_s"] > 0).all() and (index["cpu_s"] > 0).all()
    assert np.allclose(index["bonds_k"], [s.parameters["bonds_k"] for s in generate_samples(config)])
    assert (index["thermostat_aa"] == "Bussi tau 1 ps").all() and (index["thermostat_cg"] == "Bussi tau 1 ps").all()
    record = json.loads(next(out.glob("samples/*/result.json")).read_text())
    assert record["alpha"] == pytest.approx(record["D_CG"] / record["D_AA"], rel=1e-6)
    assert (next(out.glob("samples/*/work")) / "ibi" / "config.yaml").exists()
    assert first.timing["scheduler_roundtrip_s"] > 0 and first.timing["task_wall_median_s"] > 0
    before = _mtimes(out)
    again = run_sweep(config, out, hook=helpers.CountStarts(starts))
    assert (again.computed, again.skipped) == (0, 3)
    assert _mtimes(out) == before
    assert len(starts.read_text().split()) == 3  # no pipeline started again


def test_an_interrupted_sweep_completes_only_the_missing_samples(tmp_path):
    config = _config(tmp_path, sampling={"n_samples": 4})
    out = tmp_path / "sweep"
    starts = tmp_path / "starts.txt"
    part = run_sweep(config, out, max_samples=2, hook=helpers.CountStarts(starts))
    assert part.computed == 2
    import pandas as pd

    assert sorted(pd.read_csv(out / "index.csv")["status"]) == ["done", "done", "pending", "pending"]
    before = _mtimes(out)
    rest = run_sweep(config, out, hook=helpers.CountStarts(starts))
    assert (rest.computed, rest.skipped) == (2, 2)
    assert all(_mtimes(out)[p] == t for p, t in before.items())
    started = starts.read_text().split()
    assert len(started) == 4 and len(set(started)) == 4


def test_a_failing_sample_is_recorded_and_the_others_finish_then_it_is_retried(tmp_path):
    import pandas as pd

    config = _config(tmp_path)
    out = tmp_path / "sweep"
    result = run_sweep(config, out, hook=helpers.FailFor({1}))
    assert (result.computed, result.failed) == (2, 1)
    index = pd.read_csv(out / "index.csv")
    failed = index[index["status"] == "failed"]
    assert list(failed["index"]) == [1]
    assert failed["error_type"].iloc[0] == "RuntimeError"
    assert "deliberate failure of sample 1" in failed["error_message"].iloc[0]
    sample = generate_samples(config)[1]
    assert json.loads((out / "samples" / sample.sample_id / "failed.json").read_text())["traceback"]
    from openmm_cgml.report import build_report

    report = build_report(out)  # cgml report flags the failed sample
    assert f"sweep . {sample.sample_id}: failed: RuntimeError" in report.flags
    assert "Parameter sweeps" in [t for t, _ in report.sections]
    retry = run_sweep(config, out)  # a rerun retries the failed sample only
    assert (retry.computed, retry.skipped, retry.failed) == (1, 2, 0)
    assert not (out / "samples" / sample.sample_id / "failed.json").exists()
    assert json.loads((out / "samples" / sample.sample_id / "result.json").read_text())["attempts"] == 2
    assert list(pd.read_csv(out / "index.csv")["status"]) == ["done"] * 3
    assert not [f for f in build_report(out).flags if "failed" in f]


def test_an_archive_keeps_the_results_without_trajectories_and_the_sweep_continues_in_it(tmp_path):
    """``cgml sweep --archive``: finished samples' records and IBI tables (no .h5 unless asked), the failed one's
    record; learning reads the archive, and the sweep continued in it computes only what it lacks."""
    import pandas as pd
    import yaml

    from openmm_cgml.cli import main
    from openmm_cgml.learn import load_ibi_targets, load_sweeps
    from openmm_cgml.sweep import archive_sweep

    data = helpers.tiny_sweep(tmp_path / "sweep", sampling={"n_samples": 4})
    config = SweepConfig.from_data(data)
    out = tmp_path / "sweep"
    result = run_sweep(config, out, max_samples=3, hook=helpers.FailFor({1}))
    assert (result.computed, result.failed) == (2, 1)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(data))
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--archive", str(tmp_path / "archive"), "--quiet"]) == 0
    archive = tmp_path / "archive"
    assert not list(archive.rglob("*.h5")) and not list(tmp_path.glob(".archive*"))
    assert sum(p.stat().st_size for p in archive.rglob("*") if p.is_file()) < 0.2 * sum(
        p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert len(list(archive.glob("samples/*/result.json"))) == 2 and len(list(archive.glob("samples/*/failed.json"))) == 1
    assert pd.read_csv(archive / "index.csv").equals(pd.read_csv(out / "index.csv"))
    learned = load_sweeps([archive], require_converged=False)
    assert len(learned.frame) == 2
    original = load_ibi_targets(load_sweeps([out], require_converged=False))
    np.testing.assert_array_equal(load_ibi_targets(learned)["tables"], original["tables"])
    from openmm_cgml.learn.potential import _with_reference

    assert _with_reference(learned, [0, 1]) == ([], 2)  # a predicted potential cannot be run from this archive
    # with references: the mapped AA references too, and nothing else of the datasets
    kept = archive_sweep(out, archive, references=True)
    assert kept["samples"] == 2 and sorted(p.name for p in archive.rglob("*.h5")) == ["cg_reference.h5"] * 2
    assert _with_reference(learned, [0, 1]) == ([0, 1], 0)
    # continued in the archive: the failed and the pending sample only
    before = _mtimes(archive)
    rest = run_sweep(config, archive)
    assert (rest.computed, rest.skipped, rest.failed) == (2, 2, 0)
    assert all(_mtimes(archive)[p] == t for p, t in before.items())
    assert list(pd.read_csv(archive / "index.csv")["status"]) == ["done"] * 4
    with pytest.raises(ConfigurationError, match="outside the sweep directory"):
        archive_sweep(out, out / "inner")
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigurationError, match="not a sweep archive"):
        archive_sweep(out, tmp_path / "other")
    with pytest.raises(DatasetError, match="not a sweep directory"):
        archive_sweep(tmp_path / "other", tmp_path / "x")


def test_a_task_of_a_finished_sample_never_writes_again(tmp_path):
    from openmm_cgml.sweep import run_sample_task

    config = _config(tmp_path, sampling={"n_samples": 1})
    out = tmp_path / "sweep"
    run_sweep(config, out)
    sample = generate_samples(config)[0]
    path = out / "samples" / sample.sample_id / "result.json"
    stat = path.stat()
    record = run_sample_task(config.to_data(), sample.to_data(), str(out))  # e.g. a retry on another worker
    assert record["skipped"] and record["status"] == "done"
    assert path.stat().st_ino == stat.st_ino and path.stat().st_mtime_ns == stat.st_mtime_ns


class _WorkerDied(BaseException):
    """Not an Exception: the task does not record it, as a SIGKILLed worker records nothing."""


def test_a_sample_whose_worker_died_resumes_its_work(tmp_path, monkeypatch):
    """An attempt killed in its CG run leaves its work directory; the next run keeps it as resume/, the next attempt
    takes it over and skips the AA run and the mapping (their files untouched, their times kept), and IBI resumes
    from its checkpoint."""
    from openmm_cgml.sweep import run_sample_task
    from openmm_cgml.workflows import demo

    config = _config(tmp_path, sampling={"n_samples": 1})
    out = tmp_path / "sweep"
    sample = generate_samples(config)[0]
    real = demo.run_stepping_down

    def dies(*args, **kwargs):
        raise _WorkerDied

    monkeypatch.setattr(demo, "run_stepping_down", dies)
    with pytest.raises(_WorkerDied):
        run_sample_task(config.to_data(), sample.to_data(), str(out))
    monkeypatch.setattr(demo, "run_stepping_down", real)
    d = out / "samples" / sample.sample_id
    (dead,) = list(d.glob("work-*"))
    stages = json.loads((dead / "stages.json").read_text())
    assert set(stages) == {"aa", "map", "ibi"}
    aa_stat = (dead / "aa.h5").stat()
    result = run_sweep(config, out)
    assert result.computed == 1 and not list(d.glob("work-*")) and not (d / "resume").exists()
    record = json.loads((d / "result.json").read_text())
    assert record["status"] == "done" and record["resumed"] and record["attempts"] == 1
    assert record["timings_s"]["aa"] == stages["aa"] and record["timings_s"]["map"] == stages["map"]
    assert record["timings_s"]["ibi"] >= stages["ibi"]
    kept = (d / "work" / "aa.h5").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (aa_stat.st_ino, aa_stat.st_mtime_ns)  # not run again
    assert record["D_CG"] > 0


def test_the_cli_dry_run_lists_samples_and_cost(tmp_path, capsys):
    import yaml

    from openmm_cgml.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(helpers.tiny_sweep("out")))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    samples = generate_samples(SweepConfig.from_data(helpers.tiny_sweep("out")))
    assert all(s.sample_id in text for s in samples)
    assert "estimated cost" in text and "pending" in text
    assert not (tmp_path / "out").exists()  # nothing run
    path.write_text(yaml.safe_dump({**helpers.tiny_sweep("out"), "sampling": {"n_samples": 0}}))
    assert main(["sweep", str(path), "--dry-run"]) == 1
    assert "n_samples" in capsys.readouterr().err


def test_the_examples_validate():
    from openmm_cgml.config import load_config

    fast = load_config(ROOT / "examples" / "sweep.yaml", SweepConfig)
    assert fast.family == "united-atom" and fast.execution.cluster == "local"
    tmp = load_config(ROOT / "examples" / "sweep_tmp.yaml", SweepConfig)
    assert tmp.family == "openff" and tmp.molecule_model().smiles == "CC(C)C(C)C(C)C"
    assert all(p.smirks for p in tmp.parameters)
    # the learning sweep: the same samples without the viscosities, and the learning that reads it
    from openmm_cgml.learn import LearnConfig
    from openmm_cgml.sweep import generate_samples

    learning = load_config(ROOT / "examples" / "sweep_tmp_learn.yaml", SweepConfig)
    assert learning.pipeline.viscosity is None and tmp.pipeline.viscosity is not None
    assert [s.parameters for s in generate_samples(learning)] == [s.parameters for s in generate_samples(tmp)]
    learn = load_config(ROOT / "examples" / "learn_tmp.yaml", LearnConfig)
    assert learn.cross_validation == "loo"
    assert (ROOT / "examples" / learn.sweeps[0]).resolve() == (ROOT / "examples" / learning.output).resolve()


# ------------------------------------------------------------------------------------ Dask: cluster, jobs
@pytest.mark.slow
def test_a_killed_worker_has_its_task_retried_and_nothing_is_written_twice(tmp_path):
    """A worker process SIGKILLed inside a task: the scheduler retries the task on a fresh worker; the sample's
    result is written once, the killed attempt's work directory is removed by the next run."""
    import cloudpickle
    import dask
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(helpers)
    config = _config(tmp_path, sampling={"n_samples": 2})
    out = tmp_path / "sweep"
    log, marker = tmp_path / "starts.txt", tmp_path / "killed"
    # generous connection timeouts: worker processes start slowly on a loaded 2-core machine (a 10 s default
    # once timed out there)
    with dask.config.set({"distributed.comm.timeouts.connect": "120s", "distributed.comm.timeouts.tcp": "120s",
                          "distributed.deploy.lost-worker-timeout": "120s"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                         timeout="120s") as cluster, Client(cluster, timeout="120s") as client:
        result = run_sweep(config, out, client=client, hook=helpers.KillWorkerOnce(0, marker, log))
    assert marker.exists()  # a worker was killed mid-task
    starts = [line.split() for line in log.read_text().splitlines()]
    killed = next(s for s in generate_samples(config) if s.index == 0).sample_id
    pids = [pid for sid, pid in starts if sid == killed]
    assert len(pids) == 2 and pids[0] == marker.read_text() and pids[1] != pids[0]  # retried in another process
    # the other sample is computed once; if the killed worker held its result, its recomputation finds result.json
    assert result.failed == 0 and result.computed + result.skipped + result.duplicates == 2 and result.computed >= 1
    d = out / "samples" / killed
    assert json.loads((d / "result.json").read_text())["status"] == "done"
    assert len(list(d.glob("work-*"))) == 1  # the killed attempt's, left behind
    again = run_sweep(config, out)
    assert again.skipped == 2 and not list(d.glob("work-*"))
    cloudpickle.unregister_pickle_by_value(helpers)


def test_a_local_cluster_serves_http_on_a_free_loopback_port_not_8787(tmp_path):
    """Two studies on one machine do not contend for Dask's default port 8787: the scheduler's HTTP routes are on a
    free port of 127.0.0.1 (8787 is held here while the cluster starts), with no warning about it."""
    import socket
    import warnings

    from openmm_cgml.sweep.execution import make_cluster

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:  # already held by another process: the condition under test holds anyway
        pass
    config = _config(tmp_path, execution={"cluster": "local", "workers": 1, "processes": False})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cluster, threads = make_cluster(config)
        try:
            hosts_ports = [sock.getsockname()[:2] for sock in cluster.scheduler.http_server._sockets.values()]
            assert hosts_ports and all(host == "127.0.0.1" and port != 8787 for host, port in hosts_ports)
            assert threads == 1
        finally:
            cluster.close()
    finally:
        holder.close()
    assert not [w for w in caught if "8787" in str(w.message)]


def test_the_slurm_job_script_has_the_configured_resources(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from openmm_cgml.sweep.execution import jobqueue_cluster

    config = _config(tmp_path, execution={"cluster": "slurm", "jobqueue": {
        "cores": 8, "processes": 4, "memory": "16GB", "walltime": "06:30:00", "queue": "gpu", "account": "proj42",
        "job_extra": ["--gres=gpu:1"], "job_script_prologue": ["source /opt/venv/bin/activate"], "n_jobs": 3}})
    cluster = jobqueue_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=15G" in script or "#SBATCH --mem=16G" in script
    assert "#SBATCH -t 06:30:00" in script
    assert "#SBATCH -p gpu" in script and "#SBATCH -A proj42" in script and "#SBATCH --gres=gpu:1" in script
    assert "export OPENMM_CPU_THREADS=2" in script and "source /opt/venv/bin/activate" in script
    assert "distributed.cli.dask_worker" in script or "dask-worker" in script or "dask worker" in script
    assert "--nworkers 4" in script and "--nthreads 2" in script


def test_the_pbs_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from openmm_cgml.sweep.execution import jobqueue_cluster

    config = _config(tmp_path, execution={"cluster": "pbs", "jobqueue": {
        "cores": 4, "memory": "8GB", "walltime": "01:00:00", "queue": "batch"}})
    cluster = jobqueue_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#PBS -q batch" in script and "#PBS -l walltime=01:00:00" in script and "ncpus=4" in script


def test_per_sample_viscosities_correct_d_and_alpha_for_finite_size(tmp_path):
    """``pipeline.viscosity``: each sample measures the AA and CG viscosities and reports D_AA, D_CG and alpha
    Yeh-Hummer corrected (each liquid with its own viscosity), the uncorrected alpha beside them; without it the
    index says D is not corrected, and the samples' ids are those of sweeps from before the key."""
    from openmm_cgml.analysis.msd import yeh_hummer_correction

    plain = _config(tmp_path, sampling={"n_samples": 1})
    data = helpers.tiny_sweep(tmp_path / "sweep", sampling={"n_samples": 1})
    data["pipeline"]["viscosity"] = {"aa_accelerations": ["1.0 nm/ps**2"], "cg_accelerations": ["0.5 nm/ps**2"],
                                     "equilibration": "0.5 ps", "aa_production": "1 ps", "cg_production": "4 ps"}
    config = SweepConfig.from_data(data)
    assert generate_samples(plain)[0].sample_id != generate_samples(config)[0].sample_id
    # the id this sample had before pipeline.viscosity existed (main at a2f9937): finished samples are kept
    assert generate_samples(plain)[0].sample_id == "s0000-359902038b59"
    result = run_sweep(config, tmp_path / "sweep")
    assert (result.computed, result.failed) == (1, 0)
    record = json.loads(next((tmp_path / "sweep").glob("samples/*/result.json")).read_text())
    assert record["eta_AA_mPa_s"] > 0 and record["eta_CG_mPa_s"] > 0 and record["finite_size"].startswith("Yeh")
    temperature = record["temperature_K"]
    box = np.eye(3) * record["box_nm"]
    for side, eta in (("AA", record["eta_AA_mPa_s"]), ("CG", record["eta_CG_mPa_s"])):
        expected = record[f"D_{side}"] + yeh_hummer_correction(temperature, f"{eta} mPa*s", box)
        assert record[f"D_{side}_yeh_hummer"] == pytest.approx(expected, rel=1e-3)
    assert record["alpha"] == pytest.approx(record["D_CG_yeh_hummer"] / record["D_AA_yeh_hummer"], rel=1e-6)
    assert record["alpha_uncorrected"] == pytest.approx(record["D_CG"] / record["D_AA"], rel=1e-6)
    assert "viscosity" in record["timings_s"]
    assert record["viscosity_linear"] is None  # one amplitude per liquid: the linear regime is not checked
    with pytest.raises(ConfigurationError, match="acceleration"):
        SweepConfig.from_data({**data, "pipeline": {**data["pipeline"], "viscosity": {"aa_accelerations": [0.1]}}})
    with pytest.raises(ConfigurationError, match="cg_production .* at least 400 steps"):
        SweepConfig.from_data({**data, "pipeline": {**data["pipeline"], "viscosity": {"cg_production": "2 ps"}}})


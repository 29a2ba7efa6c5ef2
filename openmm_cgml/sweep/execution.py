"""Running a sweep on Dask: idempotent sample tasks, their result files, the index, clusters.

The sweep directory::

    sweep.yaml              the definition as run (rewritten each run)
    samples.json            the samples (id, parameters, temperature, seed)
    samples/<id>/result.json    a finished sample (created once, exclusively: never replaced)
    samples/<id>/failed.json    the last failure of a sample without a result (error type, message, traceback)
    samples/<id>/work/          the finished attempt's files (datasets, IBI tables, YAML of every step)
    index.csv               one row per sample (parameters, status, D_AA, D_CG, errors, alpha, RDF errors, ...)
    run.json                the last run's summary (counts, wall time, scheduler overhead)

A task first looks for ``result.json``: present, it returns it without computing (so a rerun, a retried task or
a duplicate never computes or writes twice).  Otherwise it runs the pipeline in a work directory of its own
(``work-<token>``) and publishes the result by creating ``result.json`` with a hard link, which fails if another
attempt got there first (its result is kept, this one discarded).  A pipeline error is caught and written to
``failed.json`` (so a failing sample never loses the others); the next run retries it from scratch.  A worker
that dies mid-task loses only its own attempt: the scheduler resubmits the task (``retries``).  The driver of the
next run keeps the newest ``work-*`` directory of each unfinished sample as ``resume/`` (and removes the others,
and those of finished samples): the sample's next attempt takes it over (an atomic rename: one attempt wins) and
its pipeline skips the steps that finished there and resumes IBI from its checkpoint, so a sweep killed with
every worker (a session's end, a cluster's time limit) loses only the step each sample was in.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .definition import Sample, SweepConfig

__all__ = ["SweepResult", "run_sweep", "run_sample_task", "sample_status", "write_index", "make_cluster",
           "jobqueue_cluster", "thread_limits", "estimate_cost", "INDEX_COLUMNS"]

logger = logging.getLogger(__name__)

#: Index columns before the parameters and after them (the result keys of :mod:`.pipeline`).
_FIRST = ("sample_id", "index", "status", "temperature_K", "seed")
_LAST = ("wall_s", "cpu_s", "worker", "attempts", "resumed", "error_type", "error_message")


def INDEX_COLUMNS(config: SweepConfig) -> list[str]:  # noqa: N802 (a computed constant)
    """The columns of the sweep index of ``config``, in order."""
    from .pipeline import RESULT_KEYS

    return [*_FIRST, *(p.column() for p in config.parameters), *RESULT_KEYS, *_LAST]


# ------------------------------------------------------------------------------------------------ task
def _sample_dir(directory: Path, sample: Sample) -> Path:
    return Path(directory) / "samples" / sample.sample_id


def sample_status(directory, sample: Sample) -> dict | None:
    """The record of ``sample`` in the sweep ``directory``: its result (status ``done``), its last failure
    (``failed``) or None (never run)."""
    from .._io import read_json

    d = _sample_dir(directory, sample)
    for name in ("result.json", "failed.json"):
        path = d / name
        if path.exists():
            return read_json(path, f"the sweep record {path}")
    return None


def _publish(path: Path, record: dict) -> bool:
    """Create ``path`` with ``record`` atomically and exclusively: False (nothing written) if it exists."""
    from .._io import atomic_write_text

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.publish")
    atomic_write_text(tmp, json.dumps(record, indent=2, default=str) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def run_sample_task(config_data: dict, sample_data: dict, directory: str, hook=None) -> dict:
    """The Dask task of one sample: its record (``status`` ``done``, ``failed`` or, for a sample another attempt
    finished, the finished one with ``duplicate``).  Runs the pipeline unless ``result.json`` exists.

    ``hook(sample)``, if given, is called before the pipeline (tests use it to fail or slow down samples)."""
    from .pipeline import run_pipeline

    config = SweepConfig.from_data(config_data)
    sample = Sample(index=sample_data["index"], sample_id=sample_data["sample_id"],
                    parameters=dict(sample_data["parameters"]), temperature=sample_data["temperature_K"],
                    seed=sample_data["seed"])
    d = _sample_dir(Path(directory), sample)
    d.mkdir(parents=True, exist_ok=True)
    result_path = d / "result.json"
    if result_path.exists():
        from .._io import read_json

        record = read_json(result_path, f"the sweep record {result_path}")
        record["skipped"] = True
        return record
    started = time.time()
    cpu_started = time.process_time()  # this worker process's CPU time: a cost that other load does not inflate
    token = secrets.token_hex(4)
    work = d / f"work-{token}"
    worker = f"{socket.gethostname()}:{os.getpid()}"
    previous = sample_status(directory, sample)
    attempts = int((previous or {}).get("attempts", 0)) + 1
    try:  # the work of an attempt whose worker died (kept by the driver): this attempt takes it over
        os.rename(d / "resume", work)
        resumed = True
    except FileNotFoundError:
        work.mkdir()
        resumed = False
    base = {**sample.to_data(), "worker": worker, "attempts": attempts, "started_at": started, "resumed": resumed}
    try:
        if hook is not None:
            hook(sample)
        results = run_pipeline(config, sample, work)
    except Exception as exc:  # recorded: a failing sample never loses the others
        finished = time.time()
        record = {**base, "status": "failed", "error_type": type(exc).__name__, "error_message": str(exc),
                  "traceback": traceback.format_exc(), "finished_at": finished, "wall_s": finished - started,
                  "cpu_s": time.process_time() - cpu_started}
        from .._io import atomic_write_text

        if not result_path.exists():
            atomic_write_text(d / "failed.json", json.dumps(record, indent=2, default=str) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        logger.warning("sample %s failed: %s: %s", sample.sample_id, type(exc).__name__, exc)
        return record
    finished = time.time()
    record = {**base, "status": "done", **results, "finished_at": finished, "wall_s": finished - started,
              "cpu_s": time.process_time() - cpu_started, "work_dir": "work"}
    if not _publish(result_path, record):
        shutil.rmtree(work, ignore_errors=True)
        done = json.loads(result_path.read_text())
        done["duplicate"] = True
        return done
    (d / "failed.json").unlink(missing_ok=True)
    try:
        os.rename(work, d / "work")
    except OSError:  # an older "work" from a run before: keep this attempt's files under its own name
        (d / "result.json.work").write_text(work.name + "\n")
    return record


def _keep_resumable(d: Path, *, keep: bool) -> None:
    """The ``work-*`` directories of attempts whose workers died: the newest (with ``resume/``) becomes ``resume/``
    when ``keep`` (the sample is unfinished), the rest are removed."""
    stale = [p for p in d.glob("work-*") if p.is_dir()]
    if (d / "resume").is_dir():
        stale.append(d / "resume")

    def progress(p: Path):  # the most finished steps first, then the newest
        try:
            steps = len(json.loads((p / "stages.json").read_text()))
        except (OSError, ValueError):
            steps = 0
        return steps, p.stat().st_mtime

    stale.sort(key=progress)
    newest = stale.pop() if (keep and stale) else None
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    if newest is not None and newest.name != "resume":
        os.rename(newest, d / "resume")


def _noop(t: float) -> float:
    return time.time() - t


# ---------------------------------------------------------------------------------------------- index
def _cell(value):
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def write_index(config: SweepConfig, directory, samples: list[Sample]) -> Path:
    """Write ``index.csv`` (one row per sample, in sample order; status ``pending`` for samples never run) and,
    if pyarrow is installed, ``index.parquet``.  Returns the CSV's path."""
    import csv
    import io

    from .._io import atomic_write_text

    directory = Path(directory)
    columns = INDEX_COLUMNS(config)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for s in samples:
        record = sample_status(directory, s) or {"status": "pending"}
        row = {"sample_id": s.sample_id, "index": s.index, "temperature_K": s.temperature, "seed": s.seed,
               **s.parameters}
        row.update({k: _cell(v) for k, v in record.items() if k in columns and k not in row})
        row["status"] = record.get("status", "pending")
        writer.writerow(row)
    path = directory / "index.csv"
    atomic_write_text(path, buf.getvalue())
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return path
    import pandas as pd

    from .._io import atomic_path

    with atomic_path(directory / "index.parquet") as tmp:
        pd.read_csv(path).to_parquet(tmp)
    return path


# -------------------------------------------------------------------------------------------- clusters
def thread_limits(threads: int):
    """A Dask ``WorkerPlugin`` that keeps each worker to ``threads`` CPU threads: ``OPENMM_CPU_THREADS`` and the CPU
    platform's default ``Threads``, torch's intra-op threads and the BLAS pools' environment."""
    from distributed import WorkerPlugin

    class ThreadLimits(WorkerPlugin):
        name = "openmm-cgml-thread-limits"

        def __init__(self, n: int):
            self.threads = int(n)

        def setup(self, worker=None):
            n = str(self.threads)
            for var in ("OPENMM_CPU_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[var] = n
            try:
                import openmm

                openmm.Platform.getPlatformByName("CPU").setPropertyDefaultValue("Threads", n)
            except Exception:  # no CPU platform: nothing to limit
                pass
            try:
                import torch

                torch.set_num_threads(self.threads)
            except Exception:  # torch absent or its pool already started
                pass

    return ThreadLimits(threads)


def _local_layout(execution) -> tuple[int, int]:
    cores = os.cpu_count() or 1
    threads = execution.threads_per_worker
    workers = execution.workers or max(1, cores // threads)
    return workers, threads


def jobqueue_cluster(config: SweepConfig):
    """The dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` of ``execution.jobqueue`` (not started: call
    ``scale(jobs=...)``; ``job_script()`` shows what it submits)."""
    ex = config.execution
    jq = ex.jobqueue
    import sys

    from dask_jobqueue import PBSCluster, SLURMCluster

    cls = SLURMCluster if ex.cluster == "slurm" else PBSCluster
    threads = max(1, jq.cores // jq.processes)
    prologue = [f"export OPENMM_CPU_THREADS={threads}", f"export OMP_NUM_THREADS={threads}", *jq.job_script_prologue]
    kwargs = dict(cores=jq.cores, processes=jq.processes, memory=jq.memory, walltime=jq.walltime, queue=jq.queue,
                  account=jq.account, job_script_prologue=prologue, python=jq.python or sys.executable,
                  local_directory=jq.local_directory)
    kwargs["job_extra_directives"] = list(jq.job_extra)
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def make_cluster(config: SweepConfig):
    """The cluster of ``config.execution`` (a LocalCluster, or jobqueue jobs scaled to ``n_jobs``) and the threads
    each worker may use."""
    ex = config.execution
    if ex.cluster == "local":
        from distributed import LocalCluster

        workers, threads = _local_layout(ex)
        extra = {"env": {"OPENMM_CPU_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}} if ex.processes else {}
        # no dashboard; the scheduler's own HTTP routes on a free port of the loopback interface (not 8787 on
        # every interface), so that two studies on one machine do not contend for a port
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=ex.processes,
                               memory_limit=ex.memory_limit, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, **extra)
        return cluster, threads
    cluster = jobqueue_cluster(config)
    cluster.scale(jobs=ex.jobqueue.n_jobs)
    return cluster, max(1, ex.jobqueue.cores // ex.jobqueue.processes)


# ----------------------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    """What a run of a sweep did: sample counts by outcome, the index, and the timing of its tasks."""

    directory: Path
    index: Path
    n_samples: int
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    duplicates: int = 0
    wall_s: float = 0.0
    timing: dict = field(default_factory=dict)


def estimate_cost(config: SweepConfig, samples: list[Sample], directory) -> dict:
    """What is left to run and an estimate of its cost: the median wall time of finished samples (if any) or a
    rough model of the steps, times the samples left, over the worker slots."""
    import numpy as np

    done = [sample_status(directory, s) for s in samples]
    walls = [r["wall_s"] for r in done if r and r.get("status") == "done" and r.get("wall_s")]
    left = sum(1 for r in done if not r or r.get("status") != "done")
    if walls:
        per, basis = float(np.median(walls)), f"median of {len(walls)} finished samples"
    else:
        per, basis = _step_model(config), "step count x a rough speed per particle-step on one CPU core"
    slots = _local_layout(config.execution)[0] if config.execution.cluster == "local" else \
        config.execution.jobqueue.n_jobs * config.execution.jobqueue.processes
    return {"samples": len(samples), "left": left, "per_sample_s": per, "basis": basis, "worker_slots": slots,
            "core_seconds": per * left, "wall_s_estimate": per * left / max(1, min(slots, max(left, 1)))}


def _step_model(config: SweepConfig) -> float:
    """Seconds of one sample on one core from its step counts (rates measured on this project's 2-core machine:
    united-atom LJ ~3e5 site-steps/s, OpenFF AA with PME ~2e5 atom-steps/s, tabulated CG ~2e5 bead-steps/s)."""
    p = config.pipeline
    mol = config.molecule_model()
    aa_steps = (p.aa.nvt + p.aa.npt + (p.aa.max_production or p.aa.production)) / p.aa.timestep
    if config.family == "united-atom":
        particles, rate = mol.count * len(mol.sites), 3e5
    else:
        particles, rate = mol.count * 26, 2e5  # atoms per molecule: about 26 for an octane
    beads = mol.count * p.beads
    ibi = p.ibi.get("max_iterations", 30) * (p.ibi.get("equilibration_steps", 1000) + p.ibi.get("production_steps",
                                                                                               10000))
    cg = p.cg.duration / p.cg.timesteps[0] + p.cg.equilibration_steps
    return aa_steps * particles / rate + (ibi + cg) * beads / 2e5 + 5.0


def run_sweep(config: SweepConfig, directory, *, client=None, scheduler: str | None = None, progress: bool = False,
              max_samples: int | None = None, hook=None, samples: list[Sample] | None = None) -> SweepResult:
    """Run (or resume) the sweep ``config`` in ``directory``.

    Parameters
    ----------
    config : SweepConfig
    directory : path-like
        The sweep directory (created).
    client : distributed.Client, optional
        Run on this client's cluster (the caller keeps it).  Otherwise ``scheduler`` (or
        ``config.execution.scheduler``), else the cluster of ``config.execution`` (started and closed here).
    progress : bool
        A progress bar over the whole sweep.
    max_samples : int, optional
        Submit at most this many of the samples still to do (the rest stay pending for a later run).
    hook : callable, optional
        Called in the task with the sample before its pipeline (testing; must be picklable).
    samples : list of Sample, optional
        The samples (default: :func:`~openmm_cgml.sweep.generate_samples`).

    Returns
    -------
    SweepResult
    """
    import numpy as np

    from .._io import atomic_write_text
    from .definition import generate_samples

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    samples = generate_samples(config) if samples is None else samples
    import yaml

    atomic_write_text(directory / "sweep.yaml", yaml.safe_dump(config.to_data(), sort_keys=False))
    atomic_write_text(directory / "samples.json", json.dumps([s.to_data() for s in samples], indent=1) + "\n")
    todo = []
    for s in samples:
        record = sample_status(directory, s)
        unfinished = record is None or record.get("status") != "done"
        _keep_resumable(_sample_dir(directory, s), keep=unfinished)
        if unfinished:
            todo.append(s)
    result = SweepResult(directory=directory, index=directory / "index.csv", n_samples=len(samples),
                         skipped=len(samples) - len(todo))
    if max_samples is not None:
        todo = todo[:max_samples]
    if not todo:
        result.index = write_index(config, directory, samples)
        logger.info("sweep %s: all %d samples are finished", config.name, len(samples))
        return result

    own_cluster = None
    address = scheduler or config.execution.scheduler
    from distributed import Client, as_completed

    if client is None:
        if address:
            client = Client(address)
            threads = config.pipeline.threads or 1
        else:
            own_cluster, threads = make_cluster(config)
            client = Client(own_cluster)
        own_client = True
    else:
        own_client, threads = False, config.pipeline.threads or 1
    t_start = time.time()
    try:
        client.register_plugin(thread_limits(config.pipeline.threads or threads))
        # the scheduler's own cost of a task: round trips of no-op tasks
        noop = [client.submit(_noop, time.time(), pure=False) for _ in range(4)]
        t0 = time.time()
        client.gather(noop)
        roundtrip = (time.time() - t0) / len(noop)
        config_data = config.to_data()
        submitted, futures = {}, []
        for s in todo:
            submitted[s.sample_id] = time.time()
            futures.append(client.submit(run_sample_task, config_data, s.to_data(), str(directory.resolve()), hook,
                                         key=f"cgml-sweep-{s.sample_id}", retries=config.execution.retries,
                                         pure=False))
        from tqdm.auto import tqdm

        task_walls, latencies = [], []
        with tqdm(total=len(samples), initial=result.skipped, unit="sample", desc=f"sweep {config.name}",
                  disable=not progress, dynamic_ncols=True) as bar:
            for future in as_completed(futures):
                received = time.time()
                try:
                    record = future.result()
                except Exception as exc:  # the task itself died more often than retries allow
                    logger.warning("a sample task was lost: %s: %s", type(exc).__name__, exc)
                    result.failed += 1
                    bar.update(1)
                    continue
                if record.get("skipped"):
                    result.skipped += 1
                elif record.get("duplicate"):
                    result.duplicates += 1
                elif record["status"] == "done":
                    result.computed += 1
                else:
                    result.failed += 1
                if not record.get("skipped") and record.get("finished_at"):
                    task_walls.append(record["wall_s"])
                    latencies.append(max(0.0, received - record["finished_at"]))
                bar.update(1)
                bar.set_postfix(done=result.computed + result.skipped, failed=result.failed)
                write_index(config, directory, samples)
        result.wall_s = time.time() - t_start
        median_task = float(np.median(task_walls)) if task_walls else None
        result.timing = {
            "scheduler_roundtrip_s": roundtrip,
            "result_latency_median_s": float(np.median(latencies)) if latencies else None,
            "task_wall_median_s": median_task,
            "task_wall_total_s": float(np.sum(task_walls)) if task_walls else 0.0,
            "overhead_fraction": (roundtrip / median_task) if median_task else None,
            "workers": len(client.scheduler_info().get("workers", {})),
            "threads_per_task": config.pipeline.threads or threads,
        }
    finally:
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()
    result.index = write_index(config, directory, samples)
    summary = {"name": config.name, "samples": len(samples), "computed": result.computed, "skipped": result.skipped,
               "failed": result.failed, "duplicates": result.duplicates, "wall_s": result.wall_s,
               "timing": result.timing, "host": platform.node()}
    atomic_write_text(directory / "run.json", json.dumps(summary, indent=2) + "\n")
    logger.info("sweep %s: %d computed, %d already done, %d failed in %.0f s", config.name, result.computed,
                result.skipped, result.failed, result.wall_s)
    return result

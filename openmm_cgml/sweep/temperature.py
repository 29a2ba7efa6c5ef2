"""Temperature-transferable CG models and the Arrhenius comparison (``cgml temperature``).

One configuration gives a whole study across temperatures:

1. **AA references** at every temperature (``T<K>/aa.h5``), each equilibrated at its own density (NPT, then an NVT
   production at the mean NPT density; ``density_mode: fixed`` keeps the configured density at every temperature
   instead), run as independent resumable jobs: in sequence here, or as tasks on the sweep's Dask executor
   (``execution``: a LocalCluster, a running scheduler, SLURM or PBS).  A failing temperature never loses the
   others; a rerun resumes each from its checkpoint.  With ``execution`` the later steps' independent jobs run on
   the same executor too: IBI at each temperature, the neural models' training, and every model's run at every
   temperature (a CG system of a few hundred beads spreads poorly over threads: one-thread workers run several).
2. **One mapping** (``mapping``: any ``cgml map`` method, the CG auto-encoder included) fitted at the middle training
   temperature and applied to every reference (``mapping.json``, ``T<K>/cg_reference.h5``); datasets mapped
   differently are refused.
3. **IBI at every temperature** (``T<K>/ibi/``): the best structure a pair potential gives there.  The IBI of the
   middle training temperature is also run at every other temperature (``ibi_mid``): one pair potential used across
   the range.
4. **Temperature-conditioned neural models** (``models/<name>/model.cgml``), each trained jointly on the mapped
   forces of several temperatures (``cgml train`` with ``datasets``): ``all`` on every temperature, and one
   leave-one-temperature-out model per held-out temperature (``loto_<K>K``): trained on all but that temperature,
   so it is tested at one it never saw -- inside the range (``held_out.interpolation``) and beyond it
   (``held_out.extrapolation``).
   With ``refine``, each neural model is also **refined for structure** at every temperature it was trained at
   (``T<K>/refined_<name>/``: ``cgml ibi`` with the model as ``base_model``, evaluated at that temperature; pair
   corrections grown from zero), and ``<name>_refined`` is the model plus corrections interpolated linearly in T
   between the two nearest refinements (:func:`openmm_cgml.workflows.interpolate_refinements`; at a temperature
   the model never saw, ``T<K>/refined_<name>/`` holds the interpolation, clamped to the nearest refinement beyond
   their range).
5. **CG runs** of every model at every temperature (``T<K>/<model>_run.h5``; a timestep scan first, the transport-safe
   Bussi thermostat) and their comparison with the mapped AA reference there (``T<K>/compare_<model>/``: RDFs, bonded
   distributions, density, pressure, D).
6. **Arrhenius**: D(T) of every species (residue name; the cation and the anion of an ionic liquid) for AA and every
   model, activation energies with errors, and for each leave-one-out model alpha(T) fitted on its training
   temperatures and evaluated at the one it left out, which predicts D_AA there
   (:func:`openmm_cgml.analysis.arrhenius_study`); ``arrhenius.png``.  With ``viscosity`` every D is Yeh-Hummer
   corrected first, each liquid with its own shear viscosity by periodic perturbation (``T<K>/viscosity_AA.json``
   and ``T<K>/viscosity_<model>.json``): the box changes with temperature and a CG liquid is less viscous than the
   AA one, so the box's D biases activation energies and alpha; without it every D is the simulated box's, and the
   summary says so (``finite_size``).

Writes ``summary.json`` and ``summary.md`` (the goals, met or not, with every figure) and ``costs.json`` (the wall and
CPU time of every step that ran).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, model_validator

from ..config import Density, StrictModel, Temperature, Timestep, format_quantity
from ..reference.run import ComponentConfig
from .definition import ExecutionSettings, ViscositySettings

__all__ = ["TemperatureStudyConfig", "HeldOut", "run_temperature_study", "study_plan"]

logger = logging.getLogger(__name__)

#: Two temperatures closer than this (K) are the same.
_SAME_K = 0.05


class HeldOut(StrictModel):
    """The temperatures the leave-one-out models never see."""

    interpolation: Temperature = Field(description="inside the range of the other temperatures")
    extrapolation: Temperature | None = Field(None, description="beyond the range of the other temperatures "
                                                                "(the highest or the lowest); null: none")


class TemperatureStudyConfig(StrictModel):
    """Settings of ``cgml temperature`` (see the module's documentation)."""

    output: Path = Field(Path("temperature-output"), description="output folder")
    components: list[ComponentConfig] = Field(min_length=1, description="the AA liquid's species (as in `cgml "
                                              "reference`: smiles, count, name, and partial charges with their "
                                              "source where AM1-BCC does not do)")
    temperatures: list[Temperature] = Field(min_length=3, description="every temperature of the study")
    held_out: HeldOut
    density: Density = Field(description="starting density (density_mode npt) or the density of every run (fixed)")
    density_mode: Literal["npt", "fixed"] = Field("npt", description="npt: each temperature equilibrates its own "
                                                  "density; fixed: every temperature at `density`")
    forcefield: str = Field("openff-2.2.0", description="OpenFF force field of the AA references")
    extra_forcefields: list[Path] = Field(default_factory=list, description="OpenFF .offxml files layered on the "
                                          "force field (parameters it lacks, e.g. BF4-)")
    charge_method: Literal["am1bcc", "gasteiger", "mmff94", "zeros"] = Field(
        "am1bcc", description="partial charges of components without explicit ones")
    reference: dict = Field(default_factory=dict, description="overrides of the AA reference settings "
                                                              "(`cgml reference` keys)")
    mapping: dict = Field(default_factory=lambda: {"method": "automatic", "n_beads": 1},
                          description="the one mapping (`cgml map`'s mapping section)")
    ibi: dict = Field(default_factory=dict, description="overrides of the IBI settings")
    model: dict = Field(default_factory=dict, description="overrides of the neural model's settings")
    training: dict = Field(default_factory=dict, description="overrides of the training block of train.yaml")
    refine: dict | None = Field(None, description="refine every neural model for structure at each of its training "
                                "temperatures (`cgml ibi` with it as base_model; these keys override the refinement's "
                                "IBI settings) and run `<name>_refined` beside it (null: no refinement)")
    temperature_scale: Temperature | None = Field(None, description="the model's temperature normalisation (null: "
                                                  "half the temperature range)")
    cg_duration_ps: float = Field(200.0, gt=0, description="length of each CG production run")
    cg_equilibration_steps: int = Field(1000, ge=0, description="Langevin steps before each CG production")
    scan_steps: int = Field(2500, ge=250, description="steps of each timestep-scan trial")
    cg_timestep: Timestep | None = Field(None, description="every CG run at this timestep, without the NVE timestep "
                                         "scan (null: the largest timestep whose NVE drift passes)")
    viscosity: ViscositySettings | None = Field(
        None, description="shear viscosities (periodic perturbation) of the AA liquid and of every model's run at every "
        "temperature, for Yeh-Hummer corrected D, activation energies and alpha(T), each liquid with its own viscosity "
        "(null: D of the simulated boxes; AA and CG share the box at each temperature, but the box changes with T)")
    execution: ExecutionSettings | None = Field(None, description="run the AA references as tasks on Dask (the "
                                                "sweep's executor; null: in sequence here)")
    platform: str = Field("auto", description="OpenMM platform (auto: the fastest; CG steps on the CPU)")
    overwrite: bool = Field(False, description="redo every step")
    seed: int = Field(0, ge=0, description="of the AA references")

    @model_validator(mode="after")
    def _check_temperatures(self):
        temps = sorted(self.temperatures)
        if any(b - a < _SAME_K for a, b in zip(temps, temps[1:])):
            raise ValueError(f"temperatures must be distinct, got {temps} K")

        def listed(t: float, what: str) -> None:
            if not any(abs(t - u) < _SAME_K for u in temps):
                raise ValueError(f"held_out.{what} ({t:g} K) is not one of the temperatures {temps} K")

        inter, extra = self.held_out.interpolation, self.held_out.extrapolation
        listed(inter, "interpolation")
        others = [t for t in temps if abs(t - inter) >= _SAME_K]
        if not min(others) < inter < max(others):
            raise ValueError(f"held_out.interpolation ({inter:g} K) must lie inside the range of the other "
                             f"temperatures ({min(others):g}-{max(others):g} K)")
        if extra is not None:
            listed(extra, "extrapolation")
            if abs(extra - inter) < _SAME_K:
                raise ValueError("held_out.interpolation and held_out.extrapolation must differ")
            rest = [t for t in temps if abs(t - extra) >= _SAME_K]
            if min(rest) <= extra <= max(rest):
                raise ValueError(f"held_out.extrapolation ({extra:g} K) must lie beyond the range of the other "
                                 f"temperatures ({min(rest):g}-{max(rest):g} K): the highest or the lowest")
        return self

    @model_validator(mode="after")
    def _check_reference(self):
        from ..exceptions import ConfigurationError
        from ..reference.run import ReferenceConfig

        for t in self.sorted_temperatures:  # the references' settings, checked before any of them runs
            try:
                ReferenceConfig.from_data(_reference_settings(self, t), source="reference")
            except ConfigurationError as exc:
                raise ValueError(f"the AA reference at {t:g} K (study settings and `reference` overrides): "
                                 f"{exc}") from None
        return self

    @model_validator(mode="after")
    def _check_refine(self):
        from ..exceptions import ConfigurationError
        from ..workflows.ibi import IBIConfig

        if self.refine is None:
            return self
        own = sorted(set(self.refine) & _REFINE_SET_BY_STUDY)
        if own:
            raise ValueError(f"refine: {own} are set by the study for each refinement (leave them out)")
        try:  # the keys and values, checked before any job runs
            IBIConfig.from_data({**_refine_settings(self, "x.h5", "x", 300.0, 1.0, "x.cgml"), **self.refine},
                                source="refine")
        except ConfigurationError as exc:
            raise ValueError(f"refine: {exc}") from None
        return self

    @model_validator(mode="after")
    def _check_viscosity(self):
        from ..units import to_md

        v = self.viscosity
        if v is None:
            return self
        # periodic_perturbation_viscosity samples every 10 steps into 20 blocks of at least 2 samples
        aa_dt = to_md(self.reference.get("timestep", "2 fs"), "time", name="reference.timestep")
        sides = [("aa", v.aa_production, aa_dt, "the AA timestep")]
        if self.cg_timestep is not None:
            sides.append(("cg", v.cg_production, float(self.cg_timestep), "cg_timestep"))
        for side, production, dt, what in sides:
            if production / dt < 400 * (1 - 1e-9):
                raise ValueError(f"viscosity.{side}_production ({production:g} ps) must be at least 400 steps of "
                                 f"{what} ({dt * 1e3:g} fs: {400 * dt:g} ps) for the viscosity's block error")
        return self

    @property
    def cg_platform(self) -> str:
        return "CPU" if self.platform == "auto" else self.platform

    @property
    def sorted_temperatures(self) -> list[float]:
        return sorted(float(t) for t in self.temperatures)

    @property
    def held_out_temperatures(self) -> list[float]:
        return [float(t) for t in (self.held_out.interpolation, self.held_out.extrapolation) if t is not None]

    @property
    def middle_temperature(self) -> float:
        """The median of the temperatures no model leaves out (the lower middle of an even count): where the
        mapping is fitted and the IBI potential used at every temperature comes from."""
        training = [t for t in self.sorted_temperatures
                    if all(abs(t - h) >= _SAME_K for h in self.held_out_temperatures)]
        return training[(len(training) - 1) // 2]


#: what the study sets in each refinement's `cgml ibi` configuration
_REFINE_SET_BY_STUDY = {"cg_dataset", "output_dir", "temperature", "base_model", "resume", "overwrite"}


def _ibi_settings(c, cg_dataset: str, output_dir: str, t: float, cutoff: float) -> dict:
    """The `cgml ibi` settings of the study's IBI at one temperature, its ``ibi`` overrides included."""
    return {"cg_dataset": cg_dataset, "output_dir": output_dir, "temperature": _kelvin(t), "cutoff": f"{cutoff} nm",
            "timestep": "5 fs", "max_iterations": 10, "equilibration_steps": 1000, "production_steps": 5000,
            "sample_interval": 50, "bonded": "harmonic", "platform": c.cg_platform, "resume": True, **c.ibi}


def _refine_settings(c, cg_dataset: str, output_dir: str, t: float, cutoff: float, bundle: str) -> dict:
    """The `cgml ibi` settings of one refinement (before ``c.refine``'s overrides): the study's IBI settings with
    pair corrections alone, from zero, on the fixed model."""
    return {**_ibi_settings(c, cg_dataset, output_dir, t, cutoff), "base_model": bundle, "initial": "zero",
            "bonded": "none", "refine_bonded": False}


def _label(t: float) -> str:
    return f"T{t:g}"


def _kelvin(t: float) -> str:
    return format_quantity(t, "temperature")


def study_plan(c: TemperatureStudyConfig) -> dict[str, list[float]]:
    """The neural models of the study and the temperatures each is trained on: ``all`` (every temperature) and
    ``loto_<K>K`` for each held-out temperature (every temperature but that one)."""
    temps = c.sorted_temperatures
    plan = {"all": temps}
    for h in c.held_out_temperatures:
        plan[f"loto_{h:g}K"] = [t for t in temps if abs(t - h) >= _SAME_K]
    return plan


# ------------------------------------------------------------------------------------------------ costs
class _CostLog:
    """The costs a job records where it runs (a Dask worker, say): kept in memory and handed back, so that only the
    study's own process writes ``costs.json``."""

    def __init__(self):
        self.data: dict[str, dict] = {}

    def record(self, key: str, kind: str, wall_s: float, cpu_s: float) -> None:
        self.data[key] = {"kind": kind, "wall_s": wall_s, "cpu_s": cpu_s}


class _Costs(_CostLog):
    """Wall and CPU time of every step that ran (``costs.json``, kept across resumed runs)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def record(self, key: str, kind: str, wall_s: float, cpu_s: float) -> None:
        from .._io import atomic_write_text

        super().record(key, kind, wall_s, cpu_s)
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")

    def totals(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for rec in self.data.values():
            t = out.setdefault(rec["kind"], {"wall_h": 0.0, "cpu_h": 0.0})
            t["wall_h"] += rec["wall_s"] / 3600
            t["cpu_h"] += rec["cpu_s"] / 3600
        return out


class _Executor:
    """Runs a step's independent jobs: in sequence in this process, or as tasks on the study's Dask executor
    (``execution``), started when the first step with jobs needs it and shared by the steps after."""

    def __init__(self, c: TemperatureStudyConfig):
        self.c, self.client, self.cluster = c, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def distributed(self) -> bool:
        return self.c.execution is not None

    def describe(self) -> str:
        """Where the jobs run, in words (for the summary)."""
        ex = self.c.execution
        if ex is None:
            return "in sequence, in one process"
        if ex.scheduler:
            return f"Dask tasks on the scheduler at {ex.scheduler}"
        if ex.cluster == "local":
            from .execution import _local_layout

            workers, threads = _local_layout(ex)
            return (f"Dask tasks on a local cluster of {workers} worker {'processes' if ex.processes else 'threads'} "
                    f"of {threads} thread{'s' if threads > 1 else ''}")
        return f"Dask tasks on {ex.cluster} jobs ({ex.jobqueue.n_jobs} of {ex.jobqueue.cores} cores)"

    def _start(self):
        from distributed import Client

        from .execution import make_cluster, thread_limits

        ex = self.c.execution
        self.cluster, threads = (None, ex.threads_per_worker) if ex.scheduler else make_cluster(self.c)
        self.client = Client(ex.scheduler or self.cluster)
        self.client.register_plugin(thread_limits(threads))

    def run(self, jobs: dict, desc: str, progress: bool, on_result=None) -> dict:
        """``{key: (fn, args)}`` -> ``{key: result or the exception it raised}``; every job runs, whatever the others
        do.  ``fn`` must be a module-level function (a task is pickled).  ``on_result(key, result)`` is called in
        this process as each job ends (its cost recorded at once: a study stopped mid-step keeps it)."""
        from tqdm.auto import tqdm

        results: dict = {}
        if not jobs:
            return results

        def finished(key, result):
            results[key] = result
            if on_result is not None:
                on_result(key, result)
            bar.update(1)

        with tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress) as bar:
            if not self.distributed:
                for key, (fn, args) in jobs.items():
                    try:
                        result = fn(*args)
                    except Exception as exc:  # reported by the caller; the other jobs go on
                        result = exc
                    finished(key, result)
                return results
            from distributed import as_completed

            if self.client is None:
                self._start()
            futures = {self.client.submit(fn, *args, key=f"cgml-temperature-{desc}-{i}-{time.time_ns()}",
                                          retries=self.c.execution.retries, pure=False): key
                       for i, (key, (fn, args)) in enumerate(jobs.items())}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as exc:  # reported by the caller; the other jobs go on
                    result = exc
                finished(futures[future], result)
        return results


def _raise_failures(results: dict, what: str) -> None:
    """Raise the first exception among ``results`` (after every job ran), naming all that failed."""
    failed = {k: v for k, v in results.items() if isinstance(v, BaseException)}
    if not failed:
        return
    first = next(iter(failed.values()))
    if len(failed) > 1:
        logger.error("%s failed for %s", what, ", ".join(f"{k}: {type(v).__name__}: {v}" for k, v in failed.items()))
    raise first


class _Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s, self.cpu_s = time.perf_counter() - self.wall, time.process_time() - self.cpu


# ------------------------------------------------------------------------------------------- references
def _reference_settings(c: TemperatureStudyConfig, t: float) -> dict:
    data = dict(components=[comp.model_dump(exclude_none=True) for comp in c.components],
                density=format_quantity(c.density, "density"), forcefield=c.forcefield,
                extra_forcefields=[str(p) for p in c.extra_forcefields], charge_method=c.charge_method, temperature=_kelvin(t), pressure="1 bar", timestep="2 fs",
                nvt="10 ps", npt="100 ps", production="200 ps", report_interval="1 ps", checkpoint_interval="20 ps",
                platform=c.platform, seed=c.seed)
    data.update(c.reference)
    if c.density_mode == "fixed":
        data["npt"] = "0 ps"
        data["production_ensemble"] = "nvt"
    return data


def _reference_job(settings: dict, output: str, overwrite: bool) -> dict:
    """One AA reference (a Dask task or a plain call): runs or resumes it and returns its record."""
    from ..workflows.reference import run_reference

    started, cpu = time.perf_counter(), time.process_time()
    result = run_reference(settings, output, overwrite=overwrite)
    return {"dataset": str(result.dataset), "n_frames": result.n_frames, "npt_density_g_cm3": result.npt_density,
            "npt_density_std_g_cm3": result.npt_density_std, "ns_per_day": result.ns_per_day,
            "wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def _reference_jobs(c: TemperatureStudyConfig, out: Path) -> list[tuple[float, dict, str]]:
    """(temperature, settings, dataset path) of every AA reference; writes each folder's ``reference.yaml``."""
    from ..workflows.demo import _write_yaml

    jobs = []
    for t in c.sorted_temperatures:
        folder = out / _label(t)
        folder.mkdir(parents=True, exist_ok=True)
        settings = _reference_settings(c, t)
        _write_yaml(folder / "reference.yaml", settings)
        jobs.append((t, settings, str(folder / "aa.h5")))
    return jobs


def prepare_references(config, *, progress: bool = False) -> dict[float, dict]:
    """Build and minimise the AA liquid of every temperature of ``config`` and stop (the steps that need OpenFF).

    Each ``T<K>/`` folder then holds ``reference.yaml`` and the checkpoint that ``cgml reference
    T<K>/reference.yaml -o T<K>/aa.h5`` (or :func:`run_temperature_study`) resumes from, on any machine with OpenMM
    and this package: a GPU node without OpenFF, say, with the output folder copied there and back.  Returns each
    temperature's checkpoint and its next stage."""
    from .._checkpoint import read_checkpoint
    from ..workflows.reference import run_reference

    c = config if isinstance(config, TemperatureStudyConfig) else TemperatureStudyConfig.from_data(dict(config))
    out = c.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepared = {}
    for t, settings, output in _reference_jobs(c, out):
        result = run_reference(settings, output, overwrite=c.overwrite, progress=progress, prepare_only=True)
        prepared[t] = {"checkpoint": str(result.checkpoint),
                       "stage": read_checkpoint(result.checkpoint)[0]["stage"]}
    return prepared


def _run_references(c: TemperatureStudyConfig, out: Path, costs: _Costs, progress: bool,
                    executor: _Executor) -> dict[float, dict]:
    """Every temperature's AA reference as an independent job; the records of those that finished.  A failed job
    is written to ``T<K>/failed.json`` and, after the others ran, reported in one error."""
    from .._io import atomic_write_text
    from ..exceptions import SimulationError
    from ..workflows.demo import _completed_dataset

    jobs = _reference_jobs(c, out)
    fresh = {t: (_reference_job, (s, o, c.overwrite)) for t, s, o in jobs
             if c.overwrite or _completed_dataset(Path(o)) is None}
    records: dict[float, dict] = {}
    failures: dict[float, str] = {}

    def ended(t: float, result) -> None:
        folder = out / _label(t)
        if isinstance(result, BaseException):
            failures[t] = f"{type(result).__name__}: {result}"
            atomic_write_text(folder / "failed.json", json.dumps({"temperature_K": t, "error": failures[t]}) + "\n")
            logger.warning("the AA reference at %g K failed: %s", t, failures[t])
            return
        (folder / "failed.json").unlink(missing_ok=True)
        costs.record(f"aa {t:g} K", "AA", result["wall_s"], result["cpu_s"])

    executor.run(fresh, "AA references", progress, on_result=ended)
    if failures:
        raise SimulationError("AA references failed at " + "; ".join(f"{t:g} K ({m})" for t, m in failures.items())
                              + "; the others are kept: rerun to retry the failed ones (each resumes from its "
                              "checkpoint)")
    for t, _settings, output in jobs:
        ds = _completed_dataset(Path(output))
        records[t] = {"frames": ds.n_frames, "density_g_cm3": ds.metadata.get("npt_density_g_cm3"),
                      "ns_per_day": ds.metadata.get("production_ns_per_day_last_segment")}
    return records


# ---------------------------------------------------------------------------------------------- mapping
def _map_all(c: TemperatureStudyConfig, out: Path, costs: _Costs, progress: bool) -> None:
    """Fit the mapping at the middle temperature, apply it to every reference; refuse datasets mapped otherwise."""
    from ..config import load_config
    from ..dataset import open_dataset
    from ..exceptions import InvalidMappingError
    from ..topology import CGTopology
    from ..workflows.demo import _write_yaml
    from ..workflows.map import MapConfig, run_map

    middle = c.middle_temperature
    mapping_json = out / "mapping.json"
    order = [middle] + [t for t in c.sorted_temperatures if t != middle]
    for t in order:
        folder = out / _label(t)
        target = folder / "cg_reference.h5"
        spec = dict(c.mapping) if t == middle else {"method": "file", "file": str(mapping_json)}
        cfg = {"input": str(folder / "aa.h5"), "output": str(target), "mapping": spec}
        if t == middle:
            cfg["mapping_out"] = str(mapping_json)
        yaml_path = _write_yaml(folder / "map.yaml", cfg)
        if c.overwrite or not target.exists() or (t == middle and not mapping_json.exists()):
            with _Timer() as timer:
                run_map(load_config(yaml_path, MapConfig), progress=progress)
            costs.record(f"map {t:g} K", "mapping", timer.wall_s, timer.cpu_s)
    prints = {t: CGTopology.from_dataset(open_dataset(out / _label(t) / "cg_reference.h5")).fingerprint()
              for t in order}
    if len(set(prints.values())) > 1:
        raise InvalidMappingError(f"the mapped references come from different mappings ({prints}); remove "
                                  f"{out}/T*/cg_reference.h5 to map them again with {mapping_json}")


# -------------------------------------------------------------------------------------------------- IBI
def _ibi_job(yaml_path: str, overwrite: bool, progress: bool) -> dict:
    """One temperature's IBI fit (a Dask task or a plain call), run or resumed: its record and cost."""
    from ..config import load_config
    from ..workflows.ibi import IBIConfig, run_ibi

    with _Timer() as timer:
        result = run_ibi(load_config(yaml_path, IBIConfig).model_copy(update={"overwrite": overwrite}),
                         progress=progress)
    return {"converged": bool(result.result.converged), "iterations": int(result.result.iterations),
            "wall_s": timer.wall_s, "cpu_s": timer.cpu_s}


def _ibi_all(c: TemperatureStudyConfig, out: Path, costs: _Costs, progress: bool,
             executor: _Executor) -> dict[float, dict]:
    from ..dataset import open_dataset
    from ..workflows.demo import _write_yaml

    jobs = {}
    for t in c.sorted_temperatures:
        folder = out / _label(t)
        cg_ref = open_dataset(folder / "cg_reference.h5")
        yaml_path = _write_yaml(folder / "ibi.yaml", _ibi_settings(c, str(folder / "cg_reference.h5"),
                                                                   str(folder / "ibi"), t, _ibi_cutoff(cg_ref)))
        jobs[t] = (_ibi_job, (str(yaml_path), c.overwrite, progress and not executor.distributed))

    def ended(t: float, r) -> None:
        # the first run that finished it (a resumed one: its part)
        if not isinstance(r, BaseException) and (c.overwrite or f"ibi {t:g} K" not in costs.data):
            costs.record(f"ibi {t:g} K", "IBI", r["wall_s"], r["cpu_s"])

    results = executor.run(jobs, "IBI", progress and executor.distributed, on_result=ended)
    _raise_failures(results, "IBI")
    return {t: {"converged": results[t]["converged"], "iterations": results[t]["iterations"]}
            for t in c.sorted_temperatures}


# ----------------------------------------------------------------------------------------------- neural
def _train_job(yaml_path: str, overwrite: bool, progress: bool) -> dict:
    """One neural model's training (a Dask task or a plain call), run or resumed: its cost."""
    from ..config import load_config
    from ..workflows.train import TrainConfig, run_train

    with _Timer() as timer:
        run_train(load_config(yaml_path, TrainConfig).model_copy(update={"overwrite": overwrite}), progress=progress)
    return {"wall_s": timer.wall_s, "cpu_s": timer.cpu_s}


def _train_all(c: TemperatureStudyConfig, out: Path, costs: _Costs, progress: bool,
               executor: _Executor) -> dict[str, Path]:
    from ..dataset import open_dataset
    from ..workflows.demo import _write_yaml

    temps = c.sorted_temperatures
    scale = c.temperature_scale or max(10.0, (temps[-1] - temps[0]) / 2)
    boxes = [float(np.asarray(open_dataset(out / _label(t) / "cg_reference.h5").box[-1]).diagonal().min())
             for t in temps]
    half_box = 0.5 * min(boxes)
    bundles, jobs = {}, {}
    for name, training_temps in study_plan(c).items():
        folder = out / "models" / name
        bundle = folder / "model.cgml"
        yaml_path = _write_yaml(out / "models" / f"{name}.yaml", {
            "datasets": [{"path": str(out / _label(t) / "cg_reference.h5"), "temperature": _kelvin(t)}
                         for t in training_temps],
            "output": str(folder), "resume": True,
            "model": {"name": "schnet", "hidden": 32, "n_rbf": 16, "n_interactions": 2, "intra_cutoff": "0.6 nm",
                      "inter_cutoff": f"{min(1.0, round(half_box - 0.02, 2))} nm",
                      "temperature_scale": _kelvin(scale), **c.model},
            "priors": "auto",
            "training": {"epochs": 20, "batch_size": 16, "learning_rate": 3.0e-3, "scheduler": "cosine",
                         "position_noise": "0.005 nm", **c.training}})
        if c.overwrite or not bundle.exists():
            jobs[name] = (_train_job, (str(yaml_path), c.overwrite, progress and not executor.distributed))
        bundles[name] = bundle

    def ended(name: str, r) -> None:
        if not isinstance(r, BaseException):
            costs.record(f"train {name}", "training", r["wall_s"], r["cpu_s"])

    _raise_failures(executor.run(jobs, "training", progress and executor.distributed, on_result=ended), "training")
    return bundles


# ---------------------------------------------------------------------------------------------- CG runs
# ------------------------------------------------------------------------------------------- refinement
def _ibi_cutoff(cg_reference) -> float:
    """The pair cutoff of the study's IBI and refinements at one temperature (nm): 1.2 nm or under half the box."""
    half_box = 0.5 * float(np.asarray(cg_reference.box[-1]).diagonal().min())
    return min(1.2, round(half_box - 0.01, 2))


def _refine_all(c: TemperatureStudyConfig, out: Path, costs: _Costs, progress: bool, executor: _Executor,
                bundles: dict[str, Path]) -> tuple[dict[str, dict[float, Path]], dict[str, dict]]:
    """Refine every neural model at each of its training temperatures (a job each): ``{name: {T: directory}}`` of
    the models whose refinements all ran, and the summary's record (iterations, or the error of a model left out)."""
    from ..dataset import open_dataset
    from ..workflows.demo import _write_yaml

    plan = study_plan(c)
    cutoffs = {t: _ibi_cutoff(open_dataset(out / _label(t) / "cg_reference.h5")) for t in c.sorted_temperatures}
    jobs, dirs = {}, {}
    for name, bundle in bundles.items():
        for t in plan[name]:
            folder = out / _label(t)
            target = folder / f"refined_{name}"
            settings = _refine_settings(c, str(folder / "cg_reference.h5"), str(target), t, cutoffs[t], str(bundle))
            yaml_path = _write_yaml(folder / f"refine_{name}.yaml", {**settings, **c.refine})
            jobs[name, t] = (_ibi_job, (str(yaml_path), c.overwrite, progress and not executor.distributed))
            dirs.setdefault(name, {})[t] = target

    def ended(key, r) -> None:
        name, t = key
        if not isinstance(r, BaseException) and (c.overwrite or f"refine {name} {t:g} K" not in costs.data):
            costs.record(f"refine {name} {t:g} K", "refinement", r["wall_s"], r["cpu_s"])

    results = executor.run(jobs, "refinement", progress and executor.distributed, on_result=ended)
    record: dict[str, dict] = {}
    for (name, t), r in results.items():
        if isinstance(r, BaseException):
            record.setdefault(name, {})["error"] = f"{t:g} K: {type(r).__name__}: {r}"
        else:
            record.setdefault(name, {}).setdefault("refined_at", {})[f"{t:g}"] = {
                "converged": r["converged"], "iterations": r["iterations"]}
    for name, rec in record.items():
        if "error" in rec:  # said; the study goes on without this model's refined variant
            logger.warning("the refinement of %s failed (%s); the study goes on without %s_refined", name,
                           rec["error"], name)
            dirs.pop(name, None)
    return dirs, record


def _refined_source(out: Path, name: str, t: float, refined: dict[float, Path]) -> Path:
    """The refined model's directory at ``t``: its refinement there, or the corrections of the nearest ones
    interpolated to ``t`` (``T<K>/refined_<name>/``)."""
    from ..workflows.ibi import interpolate_refinements

    own = next((d for tk, d in refined.items() if abs(tk - t) < _SAME_K), None)
    if own is not None:
        return own
    return interpolate_refinements(refined, t, out / _label(t) / f"refined_{name}")


def _rdf_errors(comparison: dict) -> dict[str, float | None]:
    """The intermolecular RDF errors of a comparison: the largest over the bead-type pairs (``rdf_error``, as the
    sweep's index) and their mean, and that of the molecular centres (``rdf_error_com``)."""
    rows = {r["quantity"]: r for r in comparison["rows"]}
    pairs = [r["value"] for q, r in rows.items() if q.startswith("g_") and r["value"] is not None
             and np.isfinite(r["value"])]
    com = rows.get("g(COM-COM)", {}).get("value")
    return {"rdf_error": max(pairs) if pairs else None, "rdf_error_mean": float(np.mean(pairs)) if pairs else None,
            "rdf_error_com": com}


def _viscosity(c: TemperatureStudyConfig, folder: Path, name: str, t: float, costs: _CostLog, system, dataset,
               *, aa: bool) -> dict:
    """The shear viscosity of the AA liquid (``aa``) or of a model's run at ``t`` (``folder/viscosity_<name>.json``,
    reused when it exists): periodic perturbation from the run's last frame, at the run's timestep.  A measurement
    that fails (the perturbed run blows up, or too few samples at the run's timestep) gives ``{"error": why}``, not
    kept, so a rerun retries it; that liquid's D then stay uncorrected, and the study goes on."""
    from ..exceptions import ConfigurationError, SimulationError
    from .pipeline import liquid_viscosity

    v = c.viscosity
    path = folder / f"viscosity_{name}.json"
    if c.overwrite:
        path.unlink(missing_ok=True)
    fresh = not path.exists()
    try:
        with _Timer() as timer:
            record = liquid_viscosity(path, system() if fresh else None, dataset, temperature=t,
                                      timestep=float(dataset.metadata["timestep_ps"]),
                                      accelerations=v.aa_accelerations if aa else v.cg_accelerations,
                                      equilibration=v.equilibration,
                                      production=v.aa_production if aa else v.cg_production,
                                      platform=(None if c.platform == "auto" else c.platform) if aa else c.cg_platform,
                                      seed=c.seed, what=f"the {name} viscosity at {t:g} K")
    except (SimulationError, ConfigurationError) as exc:
        logger.warning("the %s viscosity at %g K failed: %s; its D stay uncorrected (a rerun retries it)", name, t, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    if fresh:
        costs.record(f"viscosity {name} {t:g} K", "viscosity", timer.wall_s, timer.cpu_s)
    return record


def _aa_viscosity(c: TemperatureStudyConfig, out: Path, t: float, costs: _Costs) -> dict | None:
    """The AA liquid's viscosity at ``t`` (its NVT production's System and last frame), or None without
    ``viscosity``."""
    if c.viscosity is None:
        return None
    from ..dataset import open_dataset
    from ..forces.xml import load_system, remove_barostats

    folder = out / _label(t)

    def system():
        aa_system = load_system(folder / "aa.system.xml")
        remove_barostats(aa_system)  # the production ran at constant volume
        return aa_system

    return _viscosity(c, folder, "AA", t, costs, system, open_dataset(folder / "aa.h5"), aa=True)


def yeh_hummer_records(records: dict[str, dict], temperature: float, viscosity: dict | None,
                       box) -> dict[str, dict]:
    """Per-species D records (:func:`~openmm_cgml.analysis.compare.species_diffusion_check`) Yeh-Hummer corrected
    with the liquid's ``viscosity`` record (``viscosity_mPa_s`` and its error) in ``box``: ``D_nm2_per_ps`` becomes
    D_box + k_B T xi / (6 pi eta L), its error adds the correction's (from eta's) in quadrature, and the box's D stays
    as ``D_box_nm2_per_ps``.  Without a viscosity the records are returned as they are, marked uncorrected."""
    from ..analysis.msd import yeh_hummer_correction

    if viscosity is None:
        return {k: {**r, "finite_size": "not corrected (D of the simulated box)"} for k, r in records.items()}
    if "error" in viscosity:
        return {k: {**r, "finite_size": f"not corrected: the viscosity run failed ({viscosity['error']})"}
                for k, r in records.items()}
    eta = viscosity["viscosity_mPa_s"] * 1e-3
    if not (np.isfinite(eta) and eta > 0):  # a perturbation too weak for the noise: said, not applied
        return {k: {**r, "finite_size": f"not corrected: the viscosity estimate ({viscosity['viscosity_mPa_s']:.3g} "
                    "mPa s) is not positive (raise the accelerations or the production)"} for k, r in records.items()}
    correction = yeh_hummer_correction(temperature, eta, box)
    correction_err = correction * viscosity["viscosity_err_mPa_s"] * 1e-3 / eta
    out = {}
    for species, rec in records.items():
        rec = {**rec, "finite_size": f"Yeh-Hummer corrected (eta {viscosity['viscosity_mPa_s']:.4g} "
                                     f"± {viscosity['viscosity_err_mPa_s']:.2g} mPa s)",
               "yeh_hummer_nm2_per_ps": correction, "yeh_hummer_err_nm2_per_ps": correction_err}
        if rec.get("D_nm2_per_ps") is not None:
            rec["D_box_nm2_per_ps"], rec["D_box_err_nm2_per_ps"] = rec["D_nm2_per_ps"], rec.get("D_err_nm2_per_ps")
            rec["D_nm2_per_ps"] = rec["D_nm2_per_ps"] + correction
            if rec.get("D_err_nm2_per_ps") is not None:
                rec["D_err_nm2_per_ps"] = float(np.hypot(rec["D_err_nm2_per_ps"], correction_err))
        out[species] = rec
    return out


def _run_model(c: TemperatureStudyConfig, out: Path, t: float, name: str, source: Path, costs: _CostLog,
               progress: bool, aa_viscosity: dict | None = None) -> dict:
    """The run of one model at one temperature, its comparison with AA there and its per-species D (Yeh-Hummer
    corrected with the model's own viscosity when the study measures viscosities)."""
    from ..analysis.compare import species_diffusion_check
    from ..dataset import open_dataset
    from ..forces.xml import save_system
    from ..potential import CGPotential
    from ..topology import CGTopology
    from ..workflows.demo import _compare, _completed_dataset
    from ..workflows.polymer import _model_run

    folder = out / _label(t)
    cg_ref = open_dataset(folder / "cg_reference.h5")
    topology = CGTopology.from_dataset(cg_ref)
    start = np.asarray(cg_ref.positions[-1], dtype=float)
    from ..workflows.ibi import BASE_MODEL

    # a neural model, or a refinement of one, at the run's temperature
    options = {"temperature": t} if source.suffix == ".cgml" or (source / BASE_MODEL).exists() else {}
    run_path = folder / f"{name}_run.h5"
    fresh = c.overwrite or _completed_dataset(run_path) is None
    metadata = {"force_field": f"{name} (openmm_cgml temperature study)", "force_field_source": str(source)}
    with _Timer() as timer:
        system = CGPotential(source, **options).createSystem(topology)
        save_system(system, folder / f"{name}_system.xml")
        done = _model_run(c, folder, name, system, topology, start, metadata, progress, f"{name} model at {t:g} K",
                          temperature=_kelvin(t), timestep_fs=None if c.cg_timestep is None else c.cg_timestep * 1e3)
    if fresh:
        costs.record(f"cg {name} {t:g} K", "CG", timer.wall_s, timer.cpu_s)
    viscosity = None
    if aa_viscosity is not None:
        viscosity = _viscosity(c, folder, name, t, costs, lambda: system, done, aa=False)
    both = viscosity is not None and "error" not in viscosity and "error" not in aa_viscosity \
        and min(aa_viscosity["viscosity_mPa_s"], viscosity["viscosity_mPa_s"]) > 0
    wanted = None if not both else {"reference": f"{aa_viscosity['viscosity_mPa_s']} mPa*s",
                                    "model": f"{viscosity['viscosity_mPa_s']} mPa*s"}
    compare_dir, compare_yaml = folder / f"compare_{name}", folder / f"compare_{name}.yaml"
    made_with = yaml.safe_load(compare_yaml.read_text()).get("viscosity") if compare_yaml.exists() else None
    if c.overwrite or not (compare_dir / "comparison.json").exists() or made_with != wanted:  # none, or other settings
        _compare(folder, done.path.name, f"compare_{name}", system=f"{name}_system.xml", viscosity=wanted)
    comparison = json.loads((compare_dir / "comparison.json").read_text())
    rows = {r["quantity"]: r for r in comparison["rows"]}
    density = rows.get("density", {})
    pressure = next((r for q, r in rows.items() if q.startswith("pressure")), None)
    return {"source": str(source), **_rdf_errors(comparison),
            "D": yeh_hummer_records(species_diffusion_check(done), t, viscosity, done.box), "viscosity": viscosity,
            "density_g_cm3": density.get("model_value"), "pressure_bar": None if pressure is None else
            pressure.get("model_value"), "timestep_fs": done.metadata["timestep_ps"] * 1e3,
            "ns_per_day": done.metadata.get("ns_per_day"),
            "temperature_held": bool((done.metadata.get("temperature_check") or {}).get("held", False))}


def _model_job(c: TemperatureStudyConfig, out: Path, t: float, name: str, source: Path, progress: bool,
               aa_viscosity: dict | None) -> tuple[dict, dict]:
    """One model's run at one temperature (a Dask task or a plain call): its record (with the error, for a model
    that blows up at every timestep, so that the study goes on without it there) and the costs it recorded."""
    from ..exceptions import SimulationError

    log = _CostLog()
    try:
        record = _run_model(c, out, t, name, source, log, progress, aa_viscosity=aa_viscosity)
    except SimulationError as exc:  # said, and the others go on
        logger.warning("the %s model failed at %g K: %s; the study goes on without it there (a rerun retries it)",
                       name, t, exc)
        record = {"source": str(source), "error": f"{type(exc).__name__}: {exc}", "rdf_error": None, "D": {},
                  "viscosity": None}
    return record, log.data


# ------------------------------------------------------------------------------------------------ study
def _goals(c: TemperatureStudyConfig, runs: dict, arrhenius: dict, loto: dict) -> list[dict]:
    """The issue's goals, each with its figures and whether it is met (None: not measurable, with why)."""
    goals = []
    ti = float(c.held_out.interpolation)
    at = runs.get(ti, {})
    for key in (f"loto_{ti:g}K", f"loto_{ti:g}K_refined"):
        if key.endswith("_refined") and key not in at:
            continue
        model, mid, own = (at.get(k, {}).get("rdf_error") for k in (key, "ibi_mid", "ibi"))
        met = None if None in (model, mid, own) else bool(model < mid and model <= 1.5 * own)
        what = "temperature-conditioned model" + (" refined at its training temperatures" if
                                                  key.endswith("_refined") else "")
        goals.append({"goal": f"at the held-out {ti:g} K the {what} ({key}) has an intermolecular RDF error below "
                      "the middle-temperature IBI's and within 1.5x the IBI fitted there",
                      "model": model, "ibi_middle": mid, "ibi_own": own, "met": met})
    for species, fits in arrhenius.get("activation_energy", {}).items():
        for key in ("all", "all_refined"):
            if key == "all_refined" and key not in fits:
                continue
            dev = fits.get(key, {}).get("deviation")
            goals.append({"goal": f"|Ea_CG - Ea_AA| / Ea_AA of {species} (neural model {key}, all temperatures) "
                          "below the source's 37 %", "deviation": dev,
                          "met": None if dev is None else bool(abs(dev) < 0.37)})
    for name, rec in loto.items():
        for species, pred in rec.get("predictions", {}).items():
            err = pred.get("relative_error")
            goals.append({"goal": f"D_AA of {species} at the held-out {rec['held_out_K']:g} K predicted within 10 % "
                          f"by {name} rescaled with alpha(T)", "relative_error": err,
                          "met": None if err is None else bool(abs(err) < 0.10)})
    return goals


def run_temperature_study(config, *, progress: bool = False) -> dict:
    """Run (or resume) the temperature study of ``config`` (a :class:`TemperatureStudyConfig` or its data); returns
    the summary (also ``summary.json`` / ``summary.md``)."""
    from .._io import atomic_write_text
    from ..analysis.arrhenius import arrhenius_plot, arrhenius_study
    from ..analysis.compare import species_diffusion_check
    from ..dataset import open_dataset

    c = config if isinstance(config, TemperatureStudyConfig) else TemperatureStudyConfig.from_data(dict(config))
    out = c.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    costs = _Costs(out / "costs.json")
    temps = c.sorted_temperatures
    plan = study_plan(c)
    summary: dict[str, Any] = {
        "system": ", ".join(f"{comp.count} x {comp.smiles}" for comp in c.components),
        "temperatures_K": temps, "held_out_K": {"interpolation": float(c.held_out.interpolation),
                                                "extrapolation": None if c.held_out.extrapolation is None
                                                else float(c.held_out.extrapolation)},
        "middle_temperature_K": c.middle_temperature, "density_mode": c.density_mode,
        "models": {name: {"trained_at_K": ts} for name, ts in plan.items()}}

    with _Executor(c) as executor:
        logger.info("temperature 1: AA references at %s K", ", ".join(f"{t:g}" for t in temps))
        summary["aa"] = {f"{t:g}": r for t, r in _run_references(c, out, costs, progress, executor).items()}
        logger.info("temperature 2: one mapping, fitted at %g K", c.middle_temperature)
        _map_all(c, out, costs, progress)
        logger.info("temperature 3: IBI at every temperature")
        summary["ibi"] = {f"{t:g}": r for t, r in _ibi_all(c, out, costs, progress, executor).items()}
        logger.info("temperature 4: temperature-conditioned neural models %s", list(plan))
        bundles = _train_all(c, out, costs, progress, executor)
        refined: dict[str, dict[float, Path]] = {}
        if c.refine is not None:
            logger.info("temperature 4b: each neural model refined for structure at its training temperatures")
            refined, summary["refinement"] = _refine_all(c, out, costs, progress, executor, bundles)

        logger.info("temperature 5: CG runs of every model at every temperature")
        mid_ibi = out / _label(c.middle_temperature) / "ibi"
        diffusion: dict[str, dict] = {"AA": {}}
        aa_viscosities: dict[str, dict | None] = {}
        jobs = {}
        for t in temps:
            folder = out / _label(t)
            aa_eta = aa_viscosities[f"{t:g}"] = _aa_viscosity(c, out, t, costs)
            cg_ref = open_dataset(folder / "cg_reference.h5")
            diffusion["AA"][t] = yeh_hummer_records(species_diffusion_check(cg_ref), t, aa_eta, cg_ref.box)
            sources = {"ibi": folder / "ibi", **({"ibi_mid": mid_ibi} if t != c.middle_temperature else {}),
                       **bundles, **{f"{name}_refined": _refined_source(out, name, t, dirs)
                                     for name, dirs in refined.items()}}
            for name, source in sources.items():
                jobs[t, name] = (_model_job, (c, out, t, name, source, progress and not executor.distributed,
                                              aa_eta))

        def ended(_key, result) -> None:
            if not isinstance(result, BaseException):
                for key, rec in result[1].items():
                    costs.record(key, rec["kind"], rec["wall_s"], rec["cpu_s"])

        results = executor.run(jobs, "CG runs", progress and executor.distributed, on_result=ended)
    _raise_failures(results, "CG runs")
    runs: dict[float, dict] = {t: {} for t in temps}
    for (t, name) in jobs:  # in the study's order
        runs[t][name] = results[t, name][0]
        diffusion.setdefault(name, {})[t] = runs[t][name]["D"]
    for t in temps:
        if "ibi_mid" not in runs[t]:
            runs[t]["ibi_mid"] = runs[t]["ibi"]
            diffusion.setdefault("ibi_mid", {})[t] = runs[t]["ibi"]["D"]
    summary["runs"] = {f"{t:g}": r for t, r in runs.items()}
    summary["aa_viscosity"] = aa_viscosities
    summary["finite_size"] = ("D, activation energies and alpha(T) Yeh-Hummer corrected, each liquid (AA and every "
                              "model at every temperature) with its own viscosity by periodic perturbation"
                              if c.viscosity is not None else "not corrected: D of the simulated boxes (AA and CG "
                              "share the box at each temperature; the box changes with temperature)")

    logger.info("temperature 6: Arrhenius fits and alpha(T)")
    records = {model: _by_species(per_t) for model, per_t in diffusion.items()}
    overall = arrhenius_study(records, reference="AA", training=temps)
    arrhenius = overall.to_data()
    activation = {}
    for species in next(iter(records.values())):
        activation[species] = {}
        for model in records:
            fit = _fit_of(arrhenius, model, species)
            if fit is not None:
                activation[species][model] = fit
    arrhenius["activation_energy"] = activation
    loto = {}
    for h in c.held_out_temperatures:
        base = f"loto_{h:g}K"
        for name in (base, f"{base}_refined"):  # the model, and its refined variant where it ran
            if name not in records:
                continue
            study = arrhenius_study({"AA": records["AA"], name: records[name]}, reference="AA", training=plan[base],
                                    held_out=[h])
            loto[name] = {"held_out_K": h, "trained_at_K": plan[base], **_predictions(study.to_data(), name, h)}
    summary["arrhenius"] = arrhenius
    summary["leave_one_out"] = loto
    summary["alpha_models"] = _save_alpha_models(out, arrhenius, loto)
    summary["arrhenius_plot"] = str(arrhenius_plot(out / "arrhenius.png", overall))
    summary["goals"] = _goals(c, runs, arrhenius, loto)
    # the CG / AA speed-up per ns is measured with both arms interleaved by benchmarks/bench_temperature.py
    summary["costs"] = {"steps": costs.data, "totals": costs.totals()}
    summary["execution"] = _Executor(c).describe()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return summary


def _by_species(per_t: dict[float, dict]) -> dict[str, dict[float, dict]]:
    """``{T: {species: record}}`` -> ``{species: {T: record}}``."""
    out: dict[str, dict[float, dict]] = {}
    for t, per_species in per_t.items():
        for species, rec in per_species.items():
            out.setdefault(species, {})[t] = rec
    return out


def _fit_of(arrhenius: dict, model: str, species: str) -> dict | None:
    """Ea of ``model`` for ``species`` over all temperatures (kJ/mol, with its error), its relative deviation from
    AA's (``deviation``: |Ea - Ea_AA| / Ea_AA) and whether every D behind it reached its diffusive regime."""
    entry = arrhenius["results"].get(model, {}).get(species)
    if entry is None or entry["fit_all"] is None:
        return None
    vs = entry.get("vs_reference") or {}
    return {"Ea": entry["fit_all"]["Ea_kJ_per_mol"], "Ea_err": entry["fit_all"]["Ea_err_kJ_per_mol"],
            "deviation": vs.get("ea_deviation"), "deviation_err": vs.get("ea_deviation_err"),
            "all_converged": all(entry["converged"]), "chi2_per_dof": entry["fit_all"]["chi2_per_dof"]}


def _predictions(study: dict, model: str, held_out: float) -> dict:
    """For each species: alpha(T) of ``model`` fitted on its training temperatures, evaluated at ``held_out``, the
    D_AA it predicts there from the model's D, the measured D_AA and the relative error; and the alpha(T) model's
    parameters (``ArrheniusAlpha``), or why there is none."""
    predictions, alpha_models = {}, {}
    for species, entry in study["results"].get(model, {}).items():
        vs = entry.get("vs_reference") or {}
        alpha_models[species] = vs.get("alpha_model")
        point = next((h for h in vs.get("held_out", []) if abs(h["temperature_K"] - held_out) < _SAME_K), None)
        if point is None:
            predictions[species] = {"relative_error": None, "reason": "; ".join(vs.get("notes", []) + entry["notes"])
                                    or "no D of the model at the held-out temperature"}
            continue
        predictions[species] = {
            "alpha": point["alpha"], "alpha_err": point["alpha_err"], "extrapolated": point["extrapolated"],
            "D_model": point["d_model"], "D_AA_predicted": point["d_predicted"],
            "D_AA_predicted_err": point["d_predicted_err"], "D_AA": point["d_reference"],
            "D_AA_err": point["d_reference_err"], "relative_error": point["relative_error"],
            "relative_error_err": point["relative_error_err"]}
    return {"predictions": predictions, "alpha_models": alpha_models, "flags": study["flags"]}


def _save_alpha_models(out: Path, arrhenius: dict, loto: dict) -> dict[str, str]:
    """alpha(T) of every neural model and species as the JSON that :func:`openmm_cgml.dynamics.load_alpha_model`
    reads (for :class:`~openmm_cgml.dynamics.TimeCorrelationReporter` to apply at a run's temperature):
    ``alpha/<model>_<species>.json``.  The ``all`` model's is fitted on every temperature, a leave-one-out model's
    on its training temperatures."""
    from ..dynamics.alpha import ArrheniusAlpha, save_alpha_model

    written = {}
    sources = [(model, species, (entry.get("vs_reference") or {}).get("alpha_model"))
               for model in ("all", "all_refined")
               for species, entry in arrhenius["results"].get(model, {}).items()]
    sources += [(name, species, params) for name, rec in loto.items() for species, params in rec["alpha_models"].items()]
    for model, species, params in sources:
        if params is None:
            continue
        path = out / "alpha" / f"{model}_{species}.json"
        path.parent.mkdir(exist_ok=True)
        save_alpha_model(path, ArrheniusAlpha(**params), metadata={"model": model, "species": species,
                                                                   "source": "openmm_cgml temperature study"})
        written[f"{model}/{species}"] = str(path)
    return written


def summary_markdown(s: dict) -> str:
    """The tables of a temperature-study summary."""
    def f(x, spec=".3g"):
        return "-" if x is None else format(x, spec)

    temps = [f"{t:g}" for t in s["temperatures_K"]]
    models = list(next(iter(s["runs"].values())))
    lines = [f"# Temperature study: {s['system']}", "",
             f"Temperatures {', '.join(temps)} K; held out: interpolation {s['held_out_K']['interpolation']:g} K, "
             f"extrapolation {f(s['held_out_K']['extrapolation'], 'g')} K; the mapping and ibi_mid from "
             f"{s['middle_temperature_K']:g} K; density {s['density_mode']}.", "",
             f"Finite size: {s.get('finite_size', 'not corrected')}.", "",
             "## Goals", ""]
    for g in s["goals"]:
        status = {True: "met", False: "not met", None: "not measured"}[g["met"]]
        figures = ", ".join(f"{k} {f(v)}" for k, v in g.items() if k not in ("goal", "met"))
        lines.append(f"- **{status}**: {g['goal']} ({figures})")
    failed = [f"{m} at {t} K ({r['error']})" for t in temps for m, r in s["runs"][t].items() if r.get("error")]
    failed += [f"the refinement of {m} ({r['error']}): no {m}_refined" for m, r in s.get("refinement", {}).items()
               if r.get("error")]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {x}" for x in failed]
    lines += ["", "## Intermolecular RDF error (largest over bead pairs) by temperature", "",
              "| model | " + " | ".join(f"{t} K" for t in temps) + " |", "|---|" + "---|" * len(temps)]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(f(s["runs"][t].get(m, {}).get("rdf_error")) for t in temps) + " |")
    if any(v is not None for v in s.get("aa_viscosity", {}).values()):
        lines += ["", "## Shear viscosity (mPa s, periodic perturbation)", "",
                  "| liquid | " + " | ".join(f"{t} K" for t in temps) + " |", "|---|" + "---|" * len(temps)]

        def eta(rec):
            if not rec or "error" in rec:
                return "-" if not rec else "failed"
            note = {False: " (amplitudes disagree)", None: " (one amplitude)"}.get(rec.get("linear"), "")
            return f"{rec['viscosity_mPa_s']:.3g} ± {rec['viscosity_err_mPa_s']:.2g}{note}"
        lines.append("| AA | " + " | ".join(eta(s["aa_viscosity"].get(t)) for t in temps) + " |")
        for m in models:
            lines.append(f"| {m} | " + " | ".join(eta(s["runs"][t].get(m, {}).get("viscosity")) for t in temps) + " |")
    refined = {m: r["refined_at"] for m, r in s.get("refinement", {}).items() if "refined_at" in r}
    if refined:
        lines += ["", "## Structure refinements (`<model>_refined`: corrections interpolated in T between them)", ""]
        lines += [f"- {m}: " + ", ".join(f"{t} K ({r['iterations']} iterations"
                                         f"{', converged' if r['converged'] else ''})" for t, r in per.items())
                  for m, per in refined.items()]
    lines += ["", "## Activation energies (kJ/mol)", ""]
    for species, fits in s["arrhenius"]["activation_energy"].items():
        for model, fit in fits.items():
            dev = fit.get("deviation")
            lines.append(f"- {species}, {model}: Ea {f(fit.get('Ea'))} ± {f(fit.get('Ea_err'), '.2g')}"
                         + ("" if dev is None else f" ({100 * dev:.0f} % off AA's)"))
    lines += ["", "## Leave one temperature out: D_AA predicted with alpha(T)", ""]
    for name, rec in s["leave_one_out"].items():
        for species, p in rec.get("predictions", {}).items():
            lines.append(f"- {name} at {rec['held_out_K']:g} K, {species}: alpha {f(p.get('alpha'))}, predicted D_AA "
                         f"{f(p.get('D_AA_predicted'))} against {f(p.get('D_AA'))} nm^2/ps "
                         f"({f(None if p.get('relative_error') is None else 100 * p['relative_error'], '+.0f')} %)")
    lines += ["", "## Cost", ""]
    if s.get("execution"):
        lines += [f"Jobs ran as {s['execution']} (jobs in parallel: their wall times add up to more than the "
                  "study's)." if s["execution"].startswith("Dask") else f"Jobs ran {s['execution']}.", ""]
    for kind, tot in s["costs"]["totals"].items():
        lines.append(f"- {kind}: {tot['wall_h']:.3g} h wall, {tot['cpu_h']:.3g} h CPU")
    return "\n".join(lines) + "\n"

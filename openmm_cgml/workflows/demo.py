"""The end-to-end demo as a library workflow (``cgml demo``): the whole pipeline on a small built-in system.

On liquid 2,3,4-trimethylpentane (the molecule of Bag et al.):

1. AA reference: 64 molecules, OpenFF Sage 2.2.0 + AM1-BCC, NVT/NPT equilibration, NVT production
   recorded with forces (``aa.h5``).
2. Mapping: an automatic 3-bead mapping (symmetric end beads share a type), applied to the whole
   AA dataset (``cg_reference.h5``, ``mapping.json``).
3. IBI: pair potentials for every bead-type pair plus Boltzmann-inverted bonded terms (``ibi/``).
4. CG run with the IBI force field, built by :class:`~openmm_cgml.potential.CGPotential` from the IBI
   output directory (``cg_run.h5``, ``cg_system.xml``).
5. Validation: RDFs, bonded distributions, density, diffusion and the acceleration factor
   alpha = D_CG / D_AA (``compare/``), and a ``summary.json`` / ``summary.md``.  The full demo first measures
   the shear viscosity of the AA liquid and of the IBI model (periodic perturbation, ``aa_viscosity.json``,
   ``cg_viscosity.json``), so D is reported both as measured and Yeh-Hummer corrected.
6. Neural CG force field (``neural=False`` skips it): a SchNet-style model force-matched on the mapped
   AA forces over Boltzmann-inverted priors (``neural/model.cgml``), built into a System by the same
   ``CGPotential`` (a ``TorchForce``; ``neural_system.xml``), run (``neural_run.h5``) and compared
   with the AA reference like the IBI model (``neural_compare/``).

Every step calls a library workflow (:func:`~openmm_cgml.workflows.run_map`, :func:`~.run_ibi`,
:func:`~.run_train`, :func:`~.run_compare`) with the configuration it also writes as YAML (``map.yaml``,
``ibi.yaml``, ``compare.yaml``, ``train.yaml``), so each can be rerun by hand with
``cgml map|ibi|compare|train``.  Steps whose outputs exist are skipped, and the long ones (reference, IBI,
training) resume from their checkpoints after an interruption; ``overwrite`` redoes all, replacing them (the
YAML files do not record it, so rerunning one by hand resumes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import Field

from ..config import StrictModel

__all__ = ["DEMO_SMILES", "DemoConfig", "demo_reference_config", "run_demo", "run_stepping_down", "summary_markdown"]

logger = logging.getLogger(__name__)

#: The built-in demo system: liquid 2,3,4-trimethylpentane (Bag et al.'s molecule).
DEMO_SMILES = "CC(C)C(C)C(C)C"
#: Temperature of every run of the demo.
DEMO_TEMPERATURE = "298.15 K"


class DemoConfig(StrictModel):
    """Settings of the demo (``cgml demo``'s options)."""

    output: Path = Path("demo-output")
    molecules: int = Field(64, ge=8, description="molecules in the AA box")
    beads: int = Field(3, ge=1, le=8, description="beads per molecule")
    quick: bool = False
    overwrite: bool = False
    platform: str = "auto"
    neural: bool = True

    @property
    def cg_platform(self) -> str:
        """The OpenMM platform of the CG steps: CPU unless ``platform`` names one."""
        return "CPU" if self.platform == "auto" else self.platform


def demo_reference_config(molecules: int, quick: bool, platform: str) -> dict:
    """Settings of the demo's AA reference run."""
    return dict(
        components=[dict(smiles=DEMO_SMILES, count=molecules, name="TMP")],
        density="0.70 g/cm**3", temperature=DEMO_TEMPERATURE, pressure="1 bar", timestep="2 fs",
        nvt="2 ps" if quick else "10 ps", npt="6 ps" if quick else "60 ps",
        production="10 ps" if quick else "60 ps", report_interval="0.2 ps",
        # the full demo's production extends itself (60 -> 120 -> 240 -> 480 ps) while the molecular MSD is not
        # diffusive or its diffusive window does not yet fit into 3 blocks of the run: a single run's error over
        # molecules alone understates the spread between runs (the documentation's results page)
        max_production=None if quick else "480 ps", extend_until="diffusive" if quick else "block-error",
        checkpoint_interval="2 ps" if quick else "10 ps", platform=platform,
    )


def _write_yaml(path: Path, data: dict) -> Path:
    import yaml

    from .._io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def run_demo(config: DemoConfig, *, progress: bool = False) -> dict:
    """Run the demo of ``config`` (resuming finished steps); returns the summary (also written to
    ``summary.json`` and ``summary.md``)."""
    from .._io import atomic_write_text
    from ..config import load_config
    from ..dataset import open_dataset
    from ..forces.xml import save_system
    from ..potential import CGPotential
    from ..topology import CGTopology
    from .ibi import IBIConfig, run_ibi
    from .map import MapConfig, run_map
    from .reference import run_reference

    c = config if isinstance(config, DemoConfig) else DemoConfig.from_data(dict(config))
    out = c.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    fresh = c.overwrite
    summary: dict = {"system": f"{c.molecules} x {DEMO_SMILES}", "quick": c.quick}
    n_steps = 6 if c.neural else 5

    # 1. all-atom reference -------------------------------------------------------------
    logger.info("demo 1/%d: all-atom reference of %d x %s", n_steps, c.molecules, DEMO_SMILES)
    ref_cfg = demo_reference_config(c.molecules, c.quick, c.platform)
    _write_yaml(out / "reference.yaml", ref_cfg)
    ref = run_reference(ref_cfg, out / "aa.h5", overwrite=fresh, progress=progress)
    aa = open_dataset(ref.dataset)
    summary["aa"] = {"dataset": str(ref.dataset), "frames": ref.n_frames, "density_g_cm3": ref.npt_density,
                     "density_std_g_cm3": ref.npt_density_std,
                     "ns_per_day": aa.metadata.get("production_ns_per_day_last_segment")}

    if not c.quick:  # the viscosity of the AA liquid, for the Yeh-Hummer correction of D_AA (a few minutes)
        from ..forces.xml import load_system

        aa_system = load_system(ref.system_xml)  # this run's own file
        summary["aa"]["viscosity"] = _viscosity(out / "aa_viscosity.json", aa_system, aa.positions[-1], aa.box[-1],
                                                AA_VISCOSITY_ACCELERATIONS, timestep_ps=0.002, production_ps=50.0,
                                                platform=c.platform, fresh=fresh)

    # 2. mapping --------------------------------------------------------------------------
    logger.info("demo 2/%d: %d-bead mapping of the AA dataset", n_steps, c.beads)
    map_yaml = _write_yaml(out / "map.yaml", {
        "input": str(out / "aa.h5"), "output": str(out / "cg_reference.h5"),
        "mapping_out": str(out / "mapping.json"),
        "mapping": {"method": "automatic", "n_beads": c.beads, "weights": "com"},
    })
    if fresh or not (out / "cg_reference.h5").exists():
        run_map(load_config(map_yaml, MapConfig), progress=progress)
    cg_ref = open_dataset(out / "cg_reference.h5")

    # 3. IBI --------------------------------------------------------------------------------
    logger.info("demo 3/%d: iterative Boltzmann inversion", n_steps)
    half_box = 0.5 * float(cg_ref.box[:, [0, 1, 2], [0, 1, 2]].min())
    ibi_yaml = _write_yaml(out / "ibi.yaml", {
        "cg_dataset": str(out / "cg_reference.h5"), "output_dir": str(out / "ibi"),
        "temperature": DEMO_TEMPERATURE, "cutoff": f"{min(1.2, round(half_box - 0.01, 2))} nm", "timestep": "10 fs",
        "max_iterations": 4 if c.quick else 20, "equilibration_steps": 500 if c.quick else 2000,
        "production_steps": 2000 if c.quick else 10000, "sample_interval": 50, "bonded": "harmonic",
        "platform": c.cg_platform, "resume": True,
    })
    ibi = run_ibi(load_config(ibi_yaml, IBIConfig).model_copy(update={"overwrite": fresh}), progress=progress)
    result = ibi.result
    summary["ibi"] = {"converged": result.converged, "iterations": result.iterations,
                      "best_iteration": result.best_iteration,
                      "rdf_error": result.history[result.best_iteration]["error"],
                      "pressure_bar": result.history[result.best_iteration].get("pressure_bar"),
                      "tables": str(out / "ibi")}

    # 4. CG run ---------------------------------------------------------------------------
    logger.info("demo 4/%d: CG simulation with the IBI force field", n_steps)
    positions = ibi.positions
    topology = CGTopology.from_dataset(cg_ref)  # with the last frame's box: the start frame
    cg_system = CGPotential(out / "ibi").createSystem(topology)  # what `cgml build` with `ibi:` builds
    save_system(cg_system, out / "cg_system.xml")
    # the timestep: the largest whose NVE energy drift passes (IBI's stiff bonded terms drift at 10 fs, where a
    # Langevin thermostat still holds 298 K: docs/guide/dynamics.md); 2,500 steps per trial cost seconds here
    done = None if fresh else _completed_dataset(out / "cg_run.h5")
    if done is None:
        scan = _timestep_scan(c, out / "cg_timestep_scan.json", cg_system, positions, topology, steps=2500,
                              what="IBI model")
        duration_fs = 40_000 if c.quick else 500_000  # 40 ps (quick) or 500 ps

        def run_ibi_at(dt_fs: float, attempt: int):
            rerun = c.model_copy(update={"overwrite": c.overwrite or attempt > 0})
            return _cg_run(rerun, out / "cg_run.h5", topology, cg_system, positions, timestep=f"{dt_fs:g} fs",
                           steps=int(duration_fs / dt_fs) // 25 * 25, equilibration_steps=1000, progress=progress,
                           metadata={"force_field": "IBI pair tables + harmonic bonded (openmm_cgml demo)",
                                     "force_field_source": str(out / "ibi"), "timestep_scan": _scan_record(scan)})

        done = run_stepping_down(run_ibi_at, [dt for dt, trial in scan.trials.items() if trial["stable"]])
    aa_speed = summary["aa"]["ns_per_day"]
    cg_speed = done.metadata["ns_per_day"]
    summary["cg"] = {"dataset": str(done.path), "frames": done.n_frames, "ns_per_day": cg_speed,
                     "speedup_vs_aa_ns_per_day": cg_speed / aa_speed if aa_speed else None,
                     **_dynamics_record(done)}

    viscosity = None
    if not c.quick:  # the CG liquid's own viscosity: its D gets its own Yeh-Hummer correction
        cg_visc = _viscosity(out / "cg_viscosity.json", cg_system, done.positions[-1], done.box[-1],
                             CG_VISCOSITY_ACCELERATIONS, timestep_ps=done.metadata["timestep_ps"],
                             production_ps=200.0, platform=c.cg_platform, fresh=fresh)
        summary["cg"]["viscosity"] = cg_visc
        viscosity = {"reference": f"{summary['aa']['viscosity']['viscosity_mPa_s']:.6g} mPa*s",
                     "model": f"{cg_visc['viscosity_mPa_s']:.6g} mPa*s"}

    # 5. validation -------------------------------------------------------------------------
    logger.info("demo 5/%d: CG vs AA comparison", n_steps)
    _compare(out, "cg_run.h5", "compare", viscosity=viscosity, system="cg_system.xml")
    summary["comparison"] = json.loads((out / "compare" / "comparison.json").read_text())["rows"]
    summary["comparison_table"] = (out / "compare" / "comparison.md").read_text()

    # 6. neural CG force field --------------------------------------------------------------
    if c.neural:
        logger.info("demo 6/6: neural CG force field (force matching), its CG run and comparison")
        summary["neural"] = _neural_step(c, out, topology, positions, aa_speed, half_box, progress)

    summary["report"] = str(out / "report.html")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    from ..report import write_report

    write_report(out)  # last: it reads everything above
    return summary


def _neural_step(c: DemoConfig, out: Path, topology, positions, aa_speed, half_box: float, progress: bool) -> dict:
    """Train a neural model on the mapped AA dataset, build it with CGPotential, run it, compare it with AA."""
    from .._io import atomic_write_text
    from ..config import load_config
    from ..forces.xml import save_system
    from ..models import load_bundle
    from ..potential import CGPotential
    from .train import TrainConfig, run_train

    fresh = c.overwrite
    train_yaml = _write_yaml(out / "train.yaml", {
        "dataset": str(out / "cg_reference.h5"), "output": str(out / "neural"), "temperature": DEMO_TEMPERATURE,
        "resume": True,
        "model": {"name": "schnet", "hidden": 32, "n_rbf": 16, "n_interactions": 2, "intra_cutoff": "0.6 nm",
                  "inter_cutoff": f"{min(1.0, round(half_box - 0.02, 2))} nm"},
        "priors": "auto",
        # position noise smooths the learned surface (a Tikhonov penalty on force derivatives): without it this
        # model holds smaller timesteps than its priors (the documentation's results page, "Timestep and
        # smoothing")
        "training": {"epochs": 3 if c.quick else 20, "batch_size": 16, "learning_rate": 3.0e-3,
                     "scheduler": "cosine", "position_noise": "0.005 nm"},
    })
    bundle_path = out / "neural" / "model.cgml"
    if fresh or not bundle_path.exists():
        run_train(load_config(train_yaml, TrainConfig).model_copy(update={"overwrite": fresh}), progress=progress)
    training = load_bundle(bundle_path).training
    system = CGPotential(bundle_path).createSystem(topology)
    save_system(system, out / "neural_system.xml")
    run_path = out / "neural_run.h5"
    done = None if fresh else _completed_dataset(run_path)
    if done is None:
        # A trained model's stable timestep depends on the model: measure it (NVE energy drift), and run at the
        # largest that passes
        scan = _timestep_scan(c, out / "neural_timestep_scan.json", system, positions, topology,
                              steps=1000 if c.quick else 2500, what="trained neural model")
        # a scan trial is short: should the longer run still blow up, step down to the next timestep that held
        held = [dt for dt, trial in scan.trials.items() if trial["stable"]]
        metadata = {"force_field": "neural CG (force matching, TorchForce) + priors (openmm_cgml demo)",
                    "force_field_source": str(bundle_path), "bundle": str(bundle_path),
                    "timestep_scan": _scan_record(scan)}

        def run_at(dt_fs: float, attempt: int):
            steps = int((10_000 if c.quick else 100_000) / dt_fs) // 25 * 25  # 10 ps (quick) or 100 ps
            rerun = c.model_copy(update={"overwrite": c.overwrite or attempt > 0})
            return _cg_run(rerun, run_path, topology, system, positions, timestep=f"{dt_fs:g} fs", steps=steps,
                           equilibration_steps=500 if c.quick else 1000, metadata=metadata, progress=progress)

        done = run_stepping_down(run_at, held)
    _compare(out, "neural_run.h5", "neural_compare", system="neural_system.xml")
    speed = done.metadata["ns_per_day"]
    result = {"bundle": str(bundle_path), "validation": training["validation"], "baselines": training["baselines"],
              "epochs": len(training["history"]), "dataset": str(done.path), "frames": done.n_frames,
              **_dynamics_record(done), "ns_per_day": speed, "speedup_vs_aa_ns_per_day": speed / aa_speed if aa_speed else None,
              "comparison_table": (out / "neural_compare" / "comparison.md").read_text()}
    atomic_write_text(out / "neural_summary.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


#: Timesteps (fs) the demo's timestep scans try for its CG models.
DEMO_TIMESTEPS_FS = (2.5, 5, 10, 15, 20, 25)


def _timestep_scan(c: DemoConfig, path: Path, system, positions, topology, *, steps: int, what: str,
                   temperature: str = DEMO_TEMPERATURE):
    """:func:`~openmm_cgml.simulation.largest_stable_timestep` of a CG model (written to ``path``)."""
    from .._io import atomic_write_text
    from ..exceptions import SimulationError
    from ..simulation import largest_stable_timestep

    scan = largest_stable_timestep(system, positions, temperature=temperature, timesteps_fs=DEMO_TIMESTEPS_FS,
                                   steps=steps, box_vectors=topology.box_vectors, platform=c.cg_platform)
    atomic_write_text(path, json.dumps(_scan_record(scan), indent=2) + "\n")
    if scan.largest_stable_fs is None:
        raise SimulationError(f"the {what} does not conserve energy even at {min(DEMO_TIMESTEPS_FS):g} fs (NVE "
                              f"energy drift above {scan.max_drift:g} kT/ns per degree of freedom); see {path}")
    return scan


def _scan_record(scan) -> dict:
    return {"largest_stable_fs": scan.largest_stable_fs, "max_drift_kT_per_ns_per_dof": scan.max_drift,
            "trials": {f"{k:g} fs": v for k, v in scan.trials.items()}}


def _dynamics_record(done) -> dict:
    """A CG run's timestep, thermostat and the NVE energy drift its timestep scan measured at that timestep."""
    dt_fs = done.metadata["timestep_ps"] * 1e3
    trial = (done.metadata.get("timestep_scan") or {}).get("trials", {}).get(f"{dt_fs:g} fs", {})
    return {"timestep_fs": dt_fs, "thermostat": done.metadata.get("thermostat"),
            "energy_drift_kT_per_ns_per_dof": trial.get("energy_drift_kT_per_ns_per_dof")}


def _cg_run(c: DemoConfig, path: Path, topology, system, positions, *, timestep: str, steps: int,
            equilibration_steps: int, metadata: dict, progress: bool, temperature: str = DEMO_TEMPERATURE,
            report_interval: int = 25):
    """The finished CG run at ``path``: reused when complete (unless ``overwrite``), else run (at ``temperature``) under
    the transport-safe thermostat (:data:`~openmm_cgml.thermostat.TRANSPORT_DEFAULT`, Bussi tau 1 ps) after a
    Langevin equilibration, so its D and alpha hold; a frame every ``report_interval`` steps."""
    from ..simulation import run_simulation
    from ..thermostat import TRANSPORT_DEFAULT

    done = None if c.overwrite else _completed_dataset(path)
    if done is None:
        run_simulation(system, topology, positions, path, temperature=temperature, timestep=timestep,
                       thermostat=TRANSPORT_DEFAULT, steps=steps, report_interval=report_interval,
                       equilibration_steps=equilibration_steps, box_vectors=topology.box_vectors,
                       platform=c.cg_platform, metadata=metadata, progress=progress)
        done = _completed_dataset(path)
    return done


def run_stepping_down(run, timesteps_fs):
    """``run(dt_fs, attempt)`` at the largest of ``timesteps_fs``; if it raises SimulationError (a blow-up the short
    timestep scan did not see), log it and retry at the next smaller one.  The last failure propagates."""
    from ..exceptions import SimulationError

    ordered = sorted((float(t) for t in timesteps_fs), reverse=True)
    if not ordered:
        raise SimulationError("no timestep to run at: none held in the timestep scan")
    for attempt, dt_fs in enumerate(ordered):
        try:
            return run(dt_fs, attempt)
        except SimulationError as exc:
            if attempt == len(ordered) - 1:
                raise
            logger.warning("the CG run failed at %g fs (%s); retrying at %g fs", dt_fs, exc, ordered[attempt + 1])


#: Periodic-perturbation amplitudes (nm/ps^2) of the demo's viscosities: two each, for the linear-regime check.
#: They keep the shear rate 2 pi V / L below 0.1 /ps, and the profile amplitude V measurable against the thermal
#: noise of the 64-molecule box within the runs below (benchmarks/study_dynamics.py measured both liquids with
#: them; the smaller AA amplitude is the noisier one: the results page).
AA_VISCOSITY_ACCELERATIONS = (0.1, 0.05)
CG_VISCOSITY_ACCELERATIONS = (0.04, 0.02)


def _viscosity(path: Path, system, positions, box, accelerations, *, timestep_ps: float, production_ps: float,
               platform: str, fresh: bool) -> dict:
    """The periodic-perturbation viscosity of ``system`` at the demo temperature from ``positions`` in ``box``
    (``path`` keeps it: reused unless ``fresh``), as plain data; a non-linear result is kept and flagged."""
    from .._io import atomic_write_text
    from ..dynamics import periodic_perturbation_viscosity
    from ..reference.run import choose_platform

    if not fresh and path.exists():
        return json.loads(path.read_text())
    system.setDefaultPeriodicBoxVectors(*box)
    n_eq, n_prod = round(10.0 / timestep_ps), round(production_ps / timestep_ps) // 10 * 10
    res = periodic_perturbation_viscosity(system, positions, temperature=DEMO_TEMPERATURE,
                                          accelerations=accelerations, timestep=timestep_ps,
                                          equilibration_steps=n_eq, production_steps=n_prod, sample_interval=10,
                                          platform=choose_platform(platform).getName())
    record = {"viscosity_mPa_s": res.viscosity_mpa_s, "viscosity_err_mPa_s": res.viscosity_err * 1e3,
              "linear": res.linear, "method": "periodic perturbation (Hess 2002), Nose-Hoover",
              "estimates": [{"acceleration_nm_ps2": e.acceleration, "viscosity_mPa_s": e.viscosity * 1e3,
                             "viscosity_err_mPa_s": e.viscosity_err * 1e3} for e in res.estimates],
              "production_ps_per_amplitude": n_prod * timestep_ps}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def _compare(out: Path, run_name: str, output: str, viscosity: dict | None = None,
             system: str | None = None) -> None:
    """The comparison of the run ``out/run_name`` with the mapped AA reference into ``out/output`` (and its YAML),
    Yeh-Hummer corrected with ``viscosity`` (``{"reference": ..., "model": ...}``) if given, with both runs'
    pressures if the model's System XML ``out/system`` is given (and the AA one exists)."""
    from ..config import load_config
    from .compare import CompareConfig, run_compare

    pressure = None
    if system and (out / "aa.system.xml").exists() and (out / system).exists():
        pressure = {"reference_system": str(out / "aa.system.xml"), "reference_trajectory": str(out / "aa.h5"),
                    "model_system": str(out / system), "max_frames": 100}
    cmp_yaml = _write_yaml(out / f"{output}.yaml", {
        "reference": str(out / "cg_reference.h5"), "model": str(out / run_name), "output": str(out / output),
        "n_bins": 80, **({"viscosity": viscosity} if viscosity else {}), **({"pressure": pressure} if pressure else {}),
    })
    run_compare(load_config(cmp_yaml, CompareConfig), base_dir=out)


def _completed_dataset(path: Path):
    """The dataset at ``path`` if a finished run wrote it, else None."""
    from ..dataset import open_dataset
    from ..exceptions import DatasetError

    try:
        ds = open_dataset(path)
    except DatasetError:
        return None
    return ds if ds.metadata.get("completed") else None


def summary_markdown(s: dict) -> str:
    aa, ibi, cg = s["aa"], s["ibi"], s["cg"]

    def fmt(x, spec=".3g"):
        return "n/a" if x is None else format(x, spec)

    lines = [
        f"# openmm_cgml demo: {s['system']}{' (quick)' if s['quick'] else ''}",
        "",
        f"- AA reference: {aa['frames']} frames, NPT density {fmt(aa['density_g_cm3'], '.4f')} g/cm^3 "
        f"(sd {fmt(aa['density_std_g_cm3'], '.4f')} over the second half of the NPT run; experiment 0.715), "
        f"{fmt(aa['ns_per_day'])} ns/day",
        f"- IBI: {'converged' if ibi['converged'] else 'not converged'} after {ibi['iterations']} iterations, "
        f"RDF error {fmt(ibi['rdf_error'])} (best iteration {ibi['best_iteration']})",
        f"- CG run: {cg['frames']} frames at {fmt(cg.get('timestep_fs'), 'g')} fs ({_dynamics_text(cg)}) at "
        f"{fmt(cg['ns_per_day'])} ns/day, {fmt(cg['speedup_vs_aa_ns_per_day'])}x the AA ns/day",
        f"- Shear viscosity (periodic perturbation; D is Yeh-Hummer corrected with each run's own): "
        f"AA {_viscosity_text(aa.get('viscosity'))}, CG {_viscosity_text(cg.get('viscosity'))}",
        "",
        s.get("comparison_table", ""),
    ]
    nn = s.get("neural")
    if nn:
        val = nn["validation"]
        base = nn["baselines"]
        noise, margin = base.get("force_noise"), base.get("prior_margin")
        noise_text = (f"{100 * noise['noise_fraction']:.0f} % ± {100 * noise['noise_fraction_err']:.0f} % of their "
                      "variance by the force autocorrelation" if noise else "a large fluctuating part")
        margin_text = (f"; {100 * margin['relative_improvement']:.2f} % ± {100 * margin['relative_improvement_err']:.2f} % "
                       f"better than the priors{'' if margin['beats_priors'] else ' (not a meaningful margin)'}"
                       if margin else "")
        lines += [
            "## Neural CG force field",
            "",
            f"- Force matching: {nn['epochs']} epochs, validation force RMSE {fmt(val['rmse'])} kJ/mol/nm "
            f"({fmt(val['relative_rmse'])} of the RMS mapped force: the mapped forces are noise that no CG potential "
            f"can fit, {noise_text}); validation MSE {fmt(val['mse'])} vs priors alone "
            f"{fmt(base.get('prior_only_mse'))} and zero force {fmt(base.get('zero_force_mse'))} "
            f"(kJ/mol/nm)^2{margin_text}",
            f"- CG run (TorchForce) at {fmt(nn['timestep_fs'], 'g')} fs ({_dynamics_text(nn)}, "
            "neural_timestep_scan.json): "
            f"{nn['frames']} frames at {fmt(nn['ns_per_day'])} ns/day, "
            f"{fmt(nn['speedup_vs_aa_ns_per_day'])}x the AA ns/day",
            "",
            nn["comparison_table"],
        ]
    if s.get("report"):
        lines += ["", f"The figures, the configurations and every check: {s['report']} (one self-contained page; "
                  "open it in any browser)."]
    return "\n".join(lines) + "\n"


def _viscosity_text(v: dict | None) -> str:
    if not v:
        return "not measured (quick demo: D not finite-size corrected)"
    flag = "" if v.get("linear") is not False else " (FLAGGED: the two amplitudes disagree, outside the linear regime)"
    return f"{v['viscosity_mPa_s']:.3g} +/- {v['viscosity_err_mPa_s']:.2g} mPa s (s.e.){flag}"


def _dynamics_text(run: dict) -> str:
    from ..thermostat import describe_thermostat

    drift = run.get("energy_drift_kT_per_ns_per_dof")
    drift_text = "n/a" if drift is None else f"{drift:.2g}"
    return (f"{describe_thermostat(run.get('thermostat'))}; NVE energy drift {drift_text} kT/ns per degree of "
            "freedom in the timestep scan")

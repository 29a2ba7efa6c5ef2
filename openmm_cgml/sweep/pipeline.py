"""One sample of a sweep: AA reference -> mapping -> IBI -> CG run -> D_AA, D_CG, alpha and RDF errors.

Every step is the package's own workflow, with the configuration it also writes as YAML into the sample's work
directory (``map.yaml``, ``ibi.yaml``, and ``reference.yaml`` for the openff family), so a sample can be rerun
or inspected by hand with ``cgml map|ibi|compare``:

1. the AA reference: :func:`~openmm_cgml.sweep.family.run_united_atom_reference` (united-atom family) or
   :func:`openmm_cgml.workflows.run_reference` with the sample's ``forcefield_parameters`` (openff); its
   production runs under Bussi's thermostat, so D_AA holds;
2. :func:`openmm_cgml.workflows.run_map` (automatic mapping, ``beads`` per molecule, centres of mass);
3. :func:`openmm_cgml.workflows.run_ibi` (pair tables, harmonic bonded terms for several beads);
4. the CG run with ``CGPotential(ibi)`` under :data:`~openmm_cgml.thermostat.TRANSPORT_DEFAULT` (Bussi), stepping
   down through ``pipeline.cg.timesteps`` if a run blows up (:func:`openmm_cgml.workflows.demo.run_stepping_down`);
5. :func:`openmm_cgml.analysis.compare.compare_runs` of the CG run with the mapped AA reference (RDF errors, D
   rows, alpha with its thermostat check) written as ``compare/comparison.json``, and the diffusion check
   (:func:`openmm_cgml.analysis.compare.diffusion_check`) of both runs for D, its error, the fit window and
   whether the MSD was diffusive.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from .definition import Sample, SweepConfig

__all__ = ["run_pipeline", "RESULT_KEYS", "liquid_viscosity"]

logger = logging.getLogger(__name__)

#: The per-sample results (besides parameters and status) that the index has as columns, in order.
RESULT_KEYS = ("D_AA", "D_AA_err", "D_AA_converged", "D_AA_fit_range_ps", "D_CG", "D_CG_err", "D_CG_converged",
               "D_CG_fit_range_ps", "alpha", "alpha_err", "alpha_converged", "alpha_note", "rdf_error",
               "rdf_error_com", "ibi_converged", "ibi_rdf_error", "ibi_iterations", "cg_timestep_fs",
               "cg_temperature_held", "aa_density_g_cm3", "thermostat_aa", "thermostat_cg", "box_nm", "finite_size",
               "alpha_uncorrected", "D_AA_yeh_hummer", "D_CG_yeh_hummer", "eta_AA_mPa_s", "eta_AA_err_mPa_s",
               "eta_CG_mPa_s", "eta_CG_err_mPa_s", "viscosity_linear")


def _write_yaml(path: Path, data: dict) -> Path:
    import yaml

    from .._io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


class _Stages:
    """Which steps of a sample's pipeline finished in ``work`` (``stages.json``, rewritten atomically after each):
    an attempt that resumes the work directory of one whose worker died skips them, and keeps their times."""

    def __init__(self, work: Path):
        from .._io import read_json

        self.path = work / "stages.json"
        self.done: dict[str, float] = read_json(self.path, "a sample's finished steps") if self.path.exists() else {}

    def skip(self, name: str, timings: dict) -> bool:
        if name in self.done:
            timings[name] = self.done[name]
            return True
        return False

    def finish(self, name: str, seconds: float, timings: dict) -> None:
        from .._io import atomic_write_text

        timings[name] = self.done[name] = seconds
        atomic_write_text(self.path, json.dumps(self.done, indent=1) + "\n")


def run_pipeline(config: SweepConfig, sample: Sample, work: Path) -> dict:
    """Run the pipeline of ``sample`` in the directory ``work``; return its results (JSON-ready; keys
    :data:`RESULT_KEYS` and ``timings_s``, the wall time of each step).

    Steps recorded as finished in ``work/stages.json`` (an earlier attempt whose worker died) are not run again;
    IBI resumes from its checkpoint.  Raises whatever a step raises (the caller records it as the sample's
    error)."""
    from ..analysis.compare import compare_runs, diffusion_check
    from ..config import load_config
    from ..dataset import open_dataset
    from ..potential import CGPotential
    from ..simulation import run_simulation
    from ..thermostat import TRANSPORT_DEFAULT, describe_thermostat, recorded_thermostat
    from ..topology import CGTopology
    from ..workflows.demo import run_stepping_down
    from ..workflows.ibi import IBIConfig, run_ibi
    from ..workflows.map import MapConfig, run_map
    from .definition import parameter_values
    from .family import openff_reference_config, run_united_atom_reference

    pipe = config.pipeline
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    values = sample.parameters
    temperature = sample.temperature

    stages = _Stages(work)

    # 1. AA reference -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    aa_path = work / "aa.h5"
    if not stages.skip("aa", timings):
        if config.family == "united-atom":
            aa_path.unlink(missing_ok=True)  # a run its worker did not finish
            run_united_atom_reference(config, values, temperature, aa_path, seed=sample.seed,
                                      platform=pipe.platform, threads=pipe.threads)
        else:
            from ..workflows.reference import run_reference

            ref_cfg = openff_reference_config(config, values, temperature, seed=sample.seed, platform=pipe.platform,
                                              threads=pipe.threads)
            _write_yaml(work / "reference.yaml", ref_cfg)
            run_reference(ref_cfg, aa_path)  # resumes from its checkpoint
        stages.finish("aa", time.perf_counter() - t0, timings)

    # 2. mapping ----------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    if not stages.skip("map", timings):
        (work / "cg_reference.h5").unlink(missing_ok=True)
        map_yaml = _write_yaml(work / "map.yaml", {
            "input": str(aa_path), "output": str(work / "cg_reference.h5"), "mapping_out": str(work / "mapping.json"),
            "mapping": {"method": "automatic", "n_beads": pipe.beads, "weights": "com"}})
        run_map(load_config(map_yaml, MapConfig))
        stages.finish("map", time.perf_counter() - t0, timings)
    cg_ref = open_dataset(work / "cg_reference.h5")

    # 3. IBI --------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    half_box = 0.5 * float(cg_ref.box[:, [0, 1, 2], [0, 1, 2]].min())
    ibi_data = {"cg_dataset": str(work / "cg_reference.h5"), "output_dir": str(work / "ibi"),
                "temperature": f"{temperature} K", "cutoff": f"{min(1.2, round(half_box - 0.01, 2))} nm",
                "bonded": "harmonic", "platform": pipe.platform, "threads": pipe.threads, "seed": sample.seed,
                "resume": True}
    ibi_data.update(pipe.ibi)
    ibi_yaml = _write_yaml(work / "ibi.yaml", ibi_data)
    ibi = run_ibi(load_config(ibi_yaml, IBIConfig))  # resumes from its checkpoint
    best = ibi.result.history[ibi.result.best_iteration]
    timings["ibi"] = stages.done.get("ibi", 0.0) + (time.perf_counter() - t0)
    stages.finish("ibi", timings["ibi"], timings)

    # 4. CG run -----------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    topology = CGTopology.from_dataset(cg_ref)
    cg_system = CGPotential(work / "ibi").createSystem(topology)
    cg = pipe.cg
    cg_path = work / "cg_run.h5"

    def run_at(dt_fs: float, attempt: int):
        if cg_path.exists():
            cg_path.unlink()  # a run that blew up at a larger timestep
        dt = dt_fs * 1e-3
        report = int(round(cg.report_interval / dt))
        steps = int(round(cg.duration / dt)) // report * report
        return run_simulation(cg_system, topology, ibi.positions, cg_path, temperature=temperature,
                              timestep=f"{dt_fs:g} fs", thermostat=TRANSPORT_DEFAULT, steps=steps,
                              report_interval=report, equilibration_steps=cg.equilibration_steps,
                              box_vectors=topology.box_vectors, platform=pipe.platform, seed=sample.seed,
                              fields=("positions", "velocities"),
                              metadata={"force_field": "IBI pair tables (openmm_cgml sweep)",
                                        "force_field_source": str(work / "ibi")})

    if not stages.skip("cg", timings):
        run_stepping_down(run_at, [dt * 1e3 for dt in cg.timesteps])
        stages.finish("cg", time.perf_counter() - t0, timings)
    cg_run = open_dataset(cg_path)

    # 5. viscosities (optional): the Yeh-Hummer correction of each liquid with its own viscosity -----------
    viscosity = None
    if pipe.viscosity is not None:
        t0 = time.perf_counter()
        finished = stages.skip("viscosity", timings)
        viscosity = sample_viscosities(config, sample, work, aa_path, cg_system, cg_run)  # finished: its file
        if not finished:
            stages.finish("viscosity", time.perf_counter() - t0, timings)

    # 6. comparison -------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    comparison = compare_runs(cg_ref, cg_run, n_bins=80, viscosity=None if viscosity is None else {
        "reference": f"{viscosity['aa']['viscosity_mPa_s']} mPa*s", "model": f"{viscosity['cg']['viscosity_mPa_s']} mPa*s"})
    (work / "compare").mkdir(exist_ok=True)
    from .._io import atomic_write_text

    atomic_write_text(work / "compare" / "comparison.json",
                      json.dumps({"rows": comparison.to_data()}, indent=2, default=str) + "\n")
    atomic_write_text(work / "compare" / "comparison.md", comparison.to_markdown())
    rows = {r.quantity: r for r in comparison.rows}
    alpha_row = rows.get("alpha")
    pair_errors = [r.value for q, r in rows.items() if q.startswith("g_")]
    d_aa, d_cg = diffusion_check(cg_ref), diffusion_check(cg_run)
    timings["compare"] = time.perf_counter() - t0

    alpha = _finite(alpha_row.value) if alpha_row is not None else None
    box_nm = float(cg_run.box[:, [0, 1, 2], [0, 1, 2]].mean())
    yh = rows.get("D (molecular COM, Yeh-Hummer corrected)")
    raw = rows.get("D (molecular COM, simulated box)")
    result = {
        "D_AA": d_aa.get("D_nm2_per_ps"), "D_AA_err": d_aa.get("D_err_nm2_per_ps"),
        "D_AA_converged": bool(d_aa["converged"]), "D_AA_fit_range_ps": d_aa.get("fit_range_ps"),
        "D_AA_reason": d_aa.get("reason"),
        "D_CG": d_cg.get("D_nm2_per_ps"), "D_CG_err": d_cg.get("D_err_nm2_per_ps"),
        "D_CG_converged": bool(d_cg["converged"]), "D_CG_fit_range_ps": d_cg.get("fit_range_ps"),
        "D_CG_reason": d_cg.get("reason"),
        "alpha": alpha, "alpha_err": _finite(alpha_row.model_err) if alpha_row is not None else None,
        "alpha_converged": bool(alpha is not None and d_aa["converged"] and d_cg["converged"]),
        "alpha_note": alpha_row.note if alpha_row is not None else "diffusion not compared",
        "rdf_error": _finite(max(pair_errors)) if pair_errors else None,
        "rdf_error_com": _finite(rows["g(COM-COM)"].value) if "g(COM-COM)" in rows else None,
        "ibi_converged": bool(ibi.result.converged), "ibi_rdf_error": float(best["error"]),
        "ibi_iterations": int(ibi.result.iterations), "ibi_stop_reason": getattr(ibi.result, "stop_reason", None),
        "cg_timestep_fs": cg_run.metadata["timestep_ps"] * 1e3,
        "cg_temperature_held": bool((cg_run.metadata.get("temperature_check") or {}).get("held", False)),
        "aa_density_g_cm3": _finite(rows["density"].reference) if "density" in rows else None,
        "thermostat_aa": describe_thermostat(recorded_thermostat(cg_ref.metadata)),
        "thermostat_cg": describe_thermostat(recorded_thermostat(cg_run.metadata)),
        "box_nm": box_nm,
        "finite_size": (f"Yeh-Hummer corrected (eta_AA {viscosity['aa']['viscosity_mPa_s']:.3g}, eta_CG "
                        f"{viscosity['cg']['viscosity_mPa_s']:.3g} mPa s; D_AA, D_CG and alpha corrected)"
                        if viscosity else f"not corrected: D_AA and D_CG of the same {box_nm:.3g} nm box"),
        "alpha_uncorrected": _finite(raw.value) if raw is not None and alpha is not None else None,
        "D_AA_yeh_hummer": _finite(yh.reference) if yh is not None else None,
        "D_CG_yeh_hummer": _finite(yh.model) if yh is not None else None,
        "eta_AA_mPa_s": viscosity["aa"]["viscosity_mPa_s"] if viscosity else None,
        "eta_AA_err_mPa_s": viscosity["aa"]["viscosity_err_mPa_s"] if viscosity else None,
        "eta_CG_mPa_s": viscosity["cg"]["viscosity_mPa_s"] if viscosity else None,
        "eta_CG_err_mPa_s": viscosity["cg"]["viscosity_err_mPa_s"] if viscosity else None,
        # None where a liquid ran one amplitude (its linear regime unchecked)
        "viscosity_linear": None if not viscosity or None in (viscosity["aa"]["linear"], viscosity["cg"]["linear"])
        else bool(viscosity["aa"]["linear"] and viscosity["cg"]["linear"]),
        "units": {"D": "nm**2/ps", "parameters": {p.column(): p.unit for p, _ in parameter_values(config, sample)}},
        "timings_s": timings,
    }
    if not pipe.keep_datasets:
        for name in ("aa.h5", "cg_reference.h5", "cg_run.h5"):
            (work / name).unlink(missing_ok=True)
    return result


def sample_viscosities(config: SweepConfig, sample: Sample, work: Path, aa_path: Path, cg_system, cg_run) -> dict:
    """The AA and CG shear viscosities of a sample (periodic perturbation from each run's last frame,
    ``pipeline.viscosity``), as ``{"aa": record, "cg": record}``; kept in ``work/viscosity.json`` and reused."""
    from .._io import atomic_write_text, read_json
    from ..dataset import open_dataset

    path = work / "viscosity.json"
    if path.exists():
        return read_json(path, "a sample's viscosities")
    settings, pipe = config.pipeline.viscosity, config.pipeline
    aa = open_dataset(aa_path)
    if config.family == "united-atom":
        from .family import sample_forcefield, united_atom_system

        aa_system, _ = united_atom_system(config.molecule_model(), sample_forcefield(config, sample.parameters),
                                          float(aa.box[-1][0][0]))
    else:
        from ..forces.xml import load_system, remove_barostats

        aa_system = load_system(aa_path.with_suffix(".system.xml"))
        remove_barostats(aa_system)  # the production ran at constant volume
    out = {}
    for name, system, ds, dt, amplitudes, production in (
            ("aa", aa_system, aa, pipe.aa.timestep, settings.aa_accelerations, settings.aa_production),
            ("cg", cg_system, cg_run, cg_run.metadata["timestep_ps"], settings.cg_accelerations,
             settings.cg_production)):
        # each liquid's kept: a resumed attempt does not repeat it
        out[name] = liquid_viscosity(work / f"viscosity_{name}.json", system, ds, temperature=sample.temperature,
                                     timestep=dt, accelerations=amplitudes, equilibration=settings.equilibration,
                                     production=production, platform=pipe.platform, seed=sample.seed,
                                     what=f"a sample's {name} viscosity")
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")
    return out


def liquid_viscosity(path: Path, system, dataset, *, temperature: float, timestep: float, accelerations,
                     equilibration: float, production: float, platform: str, seed: int, what: str) -> dict:
    """The shear viscosity of one liquid by periodic perturbation
    (:func:`~openmm_cgml.dynamics.periodic_perturbation_viscosity`) from ``dataset``'s last frame and box, as a
    record (mPa s, its error, whether the amplitudes agree, each amplitude's estimate), kept in ``path`` and read
    from it when it exists.  ``timestep``, ``equilibration`` and ``production`` in ps; ``system`` without a
    barostat."""
    from .._io import atomic_write_text, read_json
    from ..dynamics import periodic_perturbation_viscosity

    if path.exists():
        return read_json(path, what)
    system.setDefaultPeriodicBoxVectors(*[v for v in dataset.box[-1]])
    res = periodic_perturbation_viscosity(
        system, dataset.positions[-1], temperature=temperature, accelerations=accelerations, timestep=timestep,
        equilibration_steps=int(round(equilibration / timestep)),
        production_steps=int(round(production / timestep)) // 10 * 10, sample_interval=10, platform=platform,
        seed=seed)
    record = {"viscosity_mPa_s": res.viscosity_mpa_s, "viscosity_err_mPa_s": res.viscosity_err * 1e3,
              "linear": None if res.linear is None else bool(res.linear), "accelerations_nm_ps2": list(accelerations),
              "estimates_mPa_s": [e.viscosity * 1e3 for e in res.estimates]}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


"""Trustworthy dynamics of the demo liquid (issue 12's study): replicas, thermostats, box sizes, alpha.

Liquid 2,3,4-trimethylpentane (the demo's molecule, OpenFF Sage 2.2.0, 298.15 K), in stages that each resume
(every run checkpoints; a finished stage is read back from its JSON in the work directory):

``aa``        independent AA replicas of 64 molecules (own packing, velocities and thermostat seeds; demo
              settings with a shorter NPT), production under Bussi's thermostat (tau 1 ps) extended from 60 ps
              up to ``--max-production`` while the molecular MSD is not diffusive
``aa-nve``    replica 1 continued in NVE (same density): D(Bussi) / D(NVE) for the AA liquid
``aa-dense``  replica 1 compressed to replica 4's density: D at two densities of one liquid
``aa-large``  128 molecules at replica 1's density: D at two box sizes (the 1/L cross-check of Yeh-Hummer)
``aa-visc``   the AA viscosity by periodic perturbation (two amplitudes) on replica 1's last frame
``cg``        for every replica and for 1 and 3 beads per molecule: the demo's IBI (at most 20 iterations),
              the timestep scan (NVE energy drift), a CG production under Bussi, D_CG and alpha = D_CG / D_AA
``cg-rdf``    the RDF error of each IBI model measured again on its CG production run
``cg-extra``  on replica 1's models: D under NVE and Langevin at 1 /ps vs Bussi, the periodic-perturbation
              viscosity, and D at 64 and 512 molecules (1/L)
``cg-errors``  single-run errors against the spread: ``--error-runs`` independent CG runs (starts from different
              reference frames, own seeds) of replica 1's 3-bead and replica 5's 1-bead model; and each 1-bead
              model at 5 fs beside the timestep its energy-drift scan chose (does the step bias D?)
``report``    the figures: ``benchmarks/results/study_dynamics.json`` and a plot next to it

Run ``python benchmarks/study_dynamics.py all`` (or stages by name); ``--workdir`` holds every run (default
``runs/study_dynamics``).  About 1.7 hours on two CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openmm_cgml._io import atomic_write_text  # noqa: E402

SMILES = "CC(C)C(C)C(C)C"
TEMPERATURE = "298.15 K"
STAGES = ("aa", "aa-nve", "aa-dense", "aa-large", "aa-visc", "cg", "cg-rdf", "cg-extra", "cg-errors", "report")
logger = logging.getLogger("study_dynamics")


def reference_config(molecules: int, seed: int, max_production: str, thermostat: dict | None = None) -> dict:
    cfg = dict(
        components=[dict(smiles=SMILES, count=molecules, name="TMP")],
        density="0.71 g/cm**3", temperature=TEMPERATURE, pressure="1 bar", timestep="2 fs",
        nvt="5 ps", npt="30 ps", production="60 ps", max_production=max_production, report_interval="0.2 ps",
        checkpoint_interval="10 ps", platform="CPU", seed=seed,
    )
    if thermostat is not None:
        cfg["thermostat"] = thermostat
    return cfg


def run_aa(work: Path, name: str, config: dict) -> dict:
    """One AA reference run (resumed if interrupted) and its molecular diffusion record."""
    from openmm_cgml.analysis.compare import molecular_diffusion
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.workflows import run_reference

    record_path = work / f"{name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    t0 = time.perf_counter()
    result = run_reference(config, work / f"{name}.h5", progress=True)
    wall = time.perf_counter() - t0
    ds = open_dataset(result.dataset)
    _, d = molecular_diffusion(ds)
    record = {"name": name, "config": config, "dataset": str(result.dataset), "frames": result.n_frames,
              "production_ps": float(ds.time[-1] - ds.time[0]), "npt_density_g_cm3": result.npt_density,
              "box_nm": float(ds.box[-1][0][0]), "wall_s": wall, "ns_per_day": result.ns_per_day,
              "thermostat": ds.metadata.get("thermostat"), "diffusion_checks": ds.metadata.get("diffusion_checks"),
              "diffusion": diffusion_record(d)}
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    return record


def cached(path: Path) -> dict | None:
    """A finished stage's record, or None."""
    return json.loads(path.read_text()) if path.exists() else None


def replica_one(work: Path):
    """Replica 1's dataset and System (its own file, written by this study)."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system

    return open_dataset(work / "aa_r1.h5"), load_system(work / "aa_r1.system.xml")


def diffusion_record(d) -> dict:
    return {"D_nm2_per_ps": float(d.D), "D_err_nm2_per_ps": float(d.D_err), "error_method": d.error_method,
            "converged": bool(d.converged), "reason": d.reason, "fit_range_ps": [float(x) for x in d.fit_range],
            "D_err_blocks": float(d.D_err_blocks), "D_err_particles": float(d.D_err_particles)}


def stage_aa(work: Path, args) -> list[dict]:
    return [run_aa(work, f"aa_r{seed}", reference_config(64, seed, args.max_production))
            for seed in range(1, args.replicas + 1)]


def stage_aa_nve(work: Path, args) -> dict:
    """Replica 1 continued in NVE from its last frame (same density, 240 ps, every 0.2 ps): D(NVE) vs D(Bussi)."""
    from openmm import app

    from openmm_cgml.analysis.compare import molecular_diffusion
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.simulation import run_simulation
    from openmm_cgml.thermostat import Thermostat

    record_path = work / "aa_nve.json"
    if (record := cached(record_path)) is not None:
        return record
    ds, system = replica_one(work)
    topology = app.PDBFile(str(work / "aa_r1.pdb")).topology
    path = work / "aa_nve.h5"
    t0 = time.perf_counter()
    done = open_dataset(path) if path.exists() else None
    if done is None or not done.metadata.get("completed"):
        run_simulation(system, topology, ds.positions[-1], path, temperature=TEMPERATURE, timestep="2 fs",
                       thermostat=Thermostat(kind="nve"), steps=120_000, report_interval=100,
                       equilibration_steps=0, box_vectors=ds.box[-1], kind="all-atom", platform="CPU", seed=5,
                       fields=("positions", "velocities"), progress=True,
                       metadata={"continues": "aa_r1.h5 (last frame; new Maxwell-Boltzmann velocities)"})
        done = open_dataset(path)
    _, d = molecular_diffusion(done)
    record = {"name": "aa_nve", "dataset": str(path), "production_ps": float(done.time[-1] - done.time[0]),
              "box_nm": float(done.box[-1][0][0]), "wall_s": time.perf_counter() - t0,
              "thermostat": done.metadata.get("thermostat"), "temperature_check": done.metadata.get("temperature_check"),
              "diffusion": diffusion_record(d)}
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    return record


def stage_aa_dense(work: Path, args) -> dict:
    """Replica 1's last frame compressed (whole molecules) to replica 4's density, 10 ps of Langevin settling and
    240 ps under Bussi: D at two densities of the same liquid, the sensitivity d ln D / d ln rho."""
    import math

    import numpy as np
    from openmm import app

    from openmm_cgml.analysis.compare import molecular_diffusion, molecule_indices
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.simulation import run_simulation
    from openmm_cgml.thermostat import TRANSPORT_DEFAULT

    record_path = work / "aa_dense.json"
    if (record := cached(record_path)) is not None:
        return record
    r1, r4 = (json.loads((work / f"aa_r{r}.json").read_text()) for r in (1, 4))
    ds, system = replica_one(work)
    factor = (r1["npt_density_g_cm3"] / r4["npt_density_g_cm3"]) ** (1 / 3)
    pos, box = np.asarray(ds.positions[-1], float), np.asarray(ds.box[-1], float)
    mol = molecule_indices(ds)
    masses = np.asarray(ds.masses, float)
    mol_mass = np.bincount(mol, weights=masses)
    com = np.stack([np.bincount(mol, weights=masses * pos[:, k]) for k in range(3)], 1) / mol_mass[:, None]
    positions = pos + (factor - 1.0) * com[mol]
    topology = app.PDBFile(str(work / "aa_r1.pdb")).topology
    path = work / "aa_dense.h5"
    t0 = time.perf_counter()
    done = open_dataset(path) if path.exists() else None
    if done is None or not done.metadata.get("completed"):
        run_simulation(system, topology, positions, path, temperature=TEMPERATURE, timestep="2 fs",
                       thermostat=TRANSPORT_DEFAULT, steps=120_000, report_interval=100, equilibration_steps=5000,
                       box_vectors=box * factor, kind="all-atom", platform="CPU", seed=6,
                       fields=("positions", "velocities"), progress=True,
                       metadata={"continues": f"aa_r1.h5 (last frame, box scaled by {factor:.5f})"})
        done = open_dataset(path)
    _, d = molecular_diffusion(done)
    d1 = r1["diffusion"]["D_nm2_per_ps"]
    record = {"name": "aa_dense", "density_g_cm3": r4["npt_density_g_cm3"], "from_density_g_cm3":
              r1["npt_density_g_cm3"], "box_scale": factor, "production_ps": float(done.time[-1] - done.time[0]),
              "wall_s": time.perf_counter() - t0, "diffusion": diffusion_record(d),
              "dlnD_dlnrho": math.log(d.D / d1) / math.log(r4["npt_density_g_cm3"] / r1["npt_density_g_cm3"])}
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    return record


def stage_aa_large(work: Path, args) -> dict:
    """128 molecules at exactly replica 1's production density (NVT only: box edge 2^(1/3) times replica 1's),
    for the 1/L cross-check without the density scatter of separate NPT runs."""
    r1 = json.loads((work / "aa_r1.json").read_text())
    config = reference_config(128, 1, args.max_production)
    config.pop("density")
    config.update(box_length=f"{r1['box_nm'] * 2 ** (1 / 3):.6f} nm", npt="0 ps")
    return run_aa(work, "aa_128", config)


# ----------------------------------------------------------------------------------------------------------
# CG: IBI models of every replica, their runs and alpha
# ----------------------------------------------------------------------------------------------------------
DEMO_TIMESTEPS_FS = (2.5, 5, 10, 15, 20, 25)
CG_RUN_PS = 500.0


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def cg_model(work: Path, replica: int, beads: int) -> dict:
    """Map replica ``replica``'s AA run to ``beads`` beads per molecule and run the demo's IBI on it."""
    from openmm_cgml.config import load_config
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.workflows import IBIConfig, MapConfig, run_ibi, run_map

    out = work / f"cg_r{replica}_b{beads}"
    out.mkdir(exist_ok=True)
    if not (out / "cg_reference.h5").exists():
        run_map(load_config(write_yaml(out / "map.yaml", {
            "input": str(work / f"aa_r{replica}.h5"), "output": str(out / "cg_reference.h5"),
            "mapping_out": str(out / "mapping.json"),
            "mapping": {"method": "automatic", "n_beads": beads, "weights": "com"}}), MapConfig))
    cg_ref = open_dataset(out / "cg_reference.h5")
    half_box = 0.5 * float(cg_ref.box[:, [0, 1, 2], [0, 1, 2]].min())
    t0 = time.perf_counter()
    ibi = run_ibi(load_config(write_yaml(out / "ibi.yaml", {  # the full demo's IBI settings
        "cg_dataset": str(out / "cg_reference.h5"), "output_dir": str(out / "ibi"), "temperature": TEMPERATURE,
        "cutoff": f"{min(1.2, round(half_box - 0.01, 2))} nm", "timestep": "10 fs", "max_iterations": 20,
        "equilibration_steps": 2000, "production_steps": 10000, "sample_interval": 50,
        "bonded": "harmonic" if beads > 1 else "none", "platform": "CPU", "resume": True}), IBIConfig))
    res = ibi.result
    errors = [h["error"] for h in res.history]
    best = min(errors)
    return {"dir": str(out), "ibi": {
        "iterations": len(errors), "best_iteration": res.best_iteration, "stop_reason": res.stop_reason,
        "converged": res.converged, "errors": errors, "best_error": best, "final_error": errors[-1],
        "final_over_best": errors[-1] / best, "kept_error": errors[res.best_iteration],
        "pressures_bar": [h.get("pressure_bar") for h in res.history],
        "production_steps": [h.get("production_steps") for h in res.history],
        "noise_ratio": [h.get("noise_ratio") for h in res.history], "wall_s": time.perf_counter() - t0}}


def cg_production(out: Path, name: str, system, topology, positions, *, dt_fs: float, ps: float, thermostat,
                  metadata: dict | None = None, seed: int = 0):
    """A CG run (Bussi unless told; 1,000 Langevin steps first) and its molecular diffusion."""
    from openmm_cgml.analysis.compare import molecular_diffusion
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.simulation import run_simulation

    path = out / f"{name}.h5"
    done = None
    if path.exists():
        ds = open_dataset(path)
        done = ds if ds.metadata.get("completed") else None
    t0 = time.perf_counter()
    if done is None:
        run_simulation(system, topology, positions, path, temperature=TEMPERATURE, timestep=f"{dt_fs:g} fs",
                       thermostat=thermostat, steps=int(ps * 1000 / dt_fs) // 25 * 25, report_interval=25,
                       equilibration_steps=1000, box_vectors=topology.box_vectors, platform="CPU", seed=seed,
                       metadata=metadata or {}, progress=True, fields=("positions", "velocities"))
        done = open_dataset(path)
    _, d = molecular_diffusion(done)
    return {"dataset": str(path), "timestep_fs": dt_fs, "production_ps": float(done.time[-1] - done.time[0]),
            "thermostat": done.metadata.get("thermostat"), "ns_per_day": done.metadata.get("ns_per_day"),
            "wall_s": time.perf_counter() - t0, "diffusion": diffusion_record(d)}


def cg_replica(work: Path, replica: int, beads: int) -> dict:
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.simulation import largest_stable_timestep
    from openmm_cgml.thermostat import TRANSPORT_DEFAULT
    from openmm_cgml.topology import CGTopology

    record_path = work / f"cg_r{replica}_b{beads}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    model = cg_model(work, replica, beads)
    out = Path(model["dir"])
    cg_ref = open_dataset(out / "cg_reference.h5")
    topology = CGTopology.from_dataset(cg_ref)
    positions = cg_ref.positions[-1]
    system = CGPotential(out / "ibi").createSystem(topology)
    scan = largest_stable_timestep(system, positions, temperature=TEMPERATURE, timesteps_fs=DEMO_TIMESTEPS_FS,
                                   steps=2500, box_vectors=topology.box_vectors, platform="CPU")
    dt = scan.largest_stable_fs
    run = cg_production(out, "cg_run", system, topology, positions, dt_fs=dt, ps=CG_RUN_PS,
                        thermostat=TRANSPORT_DEFAULT, seed=replica)
    aa = json.loads((work / f"aa_r{replica}.json").read_text())["diffusion"]
    record = {"replica": replica, "beads": beads, **model, "timestep_fs": dt,
              "energy_drift_kT_per_ns_per_dof": scan.trials[dt]["energy_drift_kT_per_ns_per_dof"],
              "run": run, "alpha": ratio(run["diffusion"], aa)}
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    return record


def ratio(num: dict, den: dict) -> dict:
    """num / den of two diffusion records, with the propagated standard error."""
    a, b = num["D_nm2_per_ps"], den["D_nm2_per_ps"]
    value = a / b
    err = value * ((num["D_err_nm2_per_ps"] / a) ** 2 + (den["D_err_nm2_per_ps"] / b) ** 2) ** 0.5
    return {"value": value, "err": err, "converged": bool(num["converged"] and den["converged"])}


def production_rdf_error(out: Path) -> dict:
    """The RDF error of the model IBI ended with, measured again on its long CG production run (the loop's own
    measure: the largest over bead-type pairs of the RMS difference of g(r) from the mapped AA target, same
    cutoff and bins), against the error of the iteration the loop kept."""
    import yaml

    from openmm_cgml.ibi import rdf_error, targets_from_dataset

    ibi = yaml.safe_load((out / "ibi.yaml").read_text())
    cutoff = float(str(ibi["cutoff"]).split()[0])
    target = targets_from_dataset(out / "cg_reference.h5", cutoff)
    run = targets_from_dataset(out / "cg_run.h5", cutoff)
    errors = {"-".join(k): rdf_error(run[k].g, target[k].g) for k in target}
    return {"errors": errors, "error": max(errors.values())}


def stage_cg_rdf(work: Path, args) -> None:
    """Add ``production_rdf`` (and its ratio to the kept iteration's error) to every CG record."""
    for path in sorted(work.glob("cg_r*_b*.json")):
        record = json.loads(path.read_text())
        if "production_rdf" not in record:
            record["production_rdf"] = production_rdf_error(Path(record["dir"]))
            record["production_rdf"]["over_kept"] = record["production_rdf"]["error"] / record["ibi"]["kept_error"]
            atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")


def stage_cg(work: Path, args) -> list[dict]:
    """The CG models of every replica whose AA run has finished (the others are left for a later call)."""
    done = [r for r in range(1, args.replicas + 1) if (work / f"aa_r{r}.json").exists()]
    if len(done) < args.replicas:
        logger.warning("AA replicas %s have not finished: their CG models are left for a later call",
                       sorted(set(range(1, args.replicas + 1)) - set(done)))
    return [cg_replica(work, r, b) for r in done for b in (3, 1)]


# ----------------------------------------------------------------------------------------------------------
# Thermostats, viscosities and box sizes
# ----------------------------------------------------------------------------------------------------------
def tile(topology, positions, n: int):
    """The CG box replicated n x n x n (molecules in order, box n times the edge)."""
    import numpy as np

    from openmm_cgml.topology import CGTopology

    box = np.asarray(topology.box_vectors, dtype=float)
    shifts = [i * box[0] + j * box[1] + k * box[2] for i in range(n) for j in range(n) for k in range(n)]
    nb, nm = topology.n_beads, topology.n_molecules
    big = CGTopology(
        bead_types=topology.bead_types * len(shifts),
        molecule_index=np.concatenate([topology.molecule_index + c * nm for c in range(len(shifts))]),
        bonds=np.concatenate([topology.bonds + c * nb for c in range(len(shifts))]).reshape(-1, 2),
        masses=np.tile(topology.masses, len(shifts)), box_vectors=box * n,
        residue_names=None if topology.residue_names is None else topology.residue_names * len(shifts))
    return big, np.concatenate([np.asarray(positions) + s for s in shifts])


def viscosity_record(res) -> dict:
    return {"viscosity_mPa_s": res.viscosity_mpa_s, "viscosity_err_mPa_s": res.viscosity_err * 1e3,
            "linear": res.linear, "box_length_z_nm": res.box_length_z,
            "estimates": [{"acceleration_nm_ps2": e.acceleration, "amplitude_nm_ps": e.amplitude,
                           "amplitude_err_nm_ps": e.amplitude_err, "viscosity_mPa_s": e.viscosity * 1e3,
                           "viscosity_err_mPa_s": e.viscosity_err * 1e3, "mean_temperature_K": e.mean_temperature}
                          for e in res.estimates]}


def stage_aa_visc(work: Path, args) -> dict:
    """The AA liquid's viscosity (periodic perturbation, two amplitudes) from replica 1's last frame."""
    from openmm_cgml.dynamics import periodic_perturbation_viscosity

    record_path = work / "aa_viscosity.json"
    if (record := cached(record_path)) is not None:
        return record
    ds, system = replica_one(work)
    system.setDefaultPeriodicBoxVectors(*ds.box[-1])
    t0 = time.perf_counter()
    res = periodic_perturbation_viscosity(system, ds.positions[-1], temperature=TEMPERATURE,
                                          accelerations=(0.1, 0.05), timestep=0.002, equilibration_steps=5000,
                                          production_steps=25000, sample_interval=10, platform="CPU")
    record = {**viscosity_record(res), "wall_s": time.perf_counter() - t0}
    atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
    return record


def stage_cg_extra(work: Path, args) -> dict:
    """Replica 1's 3-bead IBI model: thermostats vs NVE, viscosity, and D at 64 and 512 molecules."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.dynamics import periodic_perturbation_viscosity
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.thermostat import TRANSPORT_DEFAULT, Thermostat
    from openmm_cgml.topology import CGTopology

    record_path = work / "cg_extra.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    base = json.loads((work / "cg_r1_b3.json").read_text())
    out = Path(base["dir"])
    run = open_dataset(out / "cg_run.h5")
    topology = CGTopology.from_dataset(run)
    start = run.positions[-1]
    potential = CGPotential(out / "ibi")
    system = potential.createSystem(topology)
    dt = base["timestep_fs"]
    record = {"model": "replica 1, 3 beads", "timestep_fs": dt, "bussi": base["run"]}
    for name, th in (("nve", Thermostat(kind="nve")), ("langevin_1ps", Thermostat(kind="langevin", friction="1 /ps"))):
        record[name] = cg_production(out, f"cg_{name}", system, topology, start, dt_fs=dt, ps=CG_RUN_PS,
                                     thermostat=th, seed=11)
    t0 = time.perf_counter()
    system.setDefaultPeriodicBoxVectors(*topology.box_vectors)
    visc = periodic_perturbation_viscosity(system, start, temperature=TEMPERATURE, accelerations=(0.04, 0.02),
                                           timestep=dt * 1e-3, equilibration_steps=int(20_000 / dt),
                                           production_steps=int(200_000 / dt) // 10 * 10, sample_interval=10,
                                           platform="CPU")
    record["viscosity"] = {**viscosity_record(visc), "wall_s": time.perf_counter() - t0}
    big_top, big_pos = tile(topology, start, 2)
    big_system = potential.createSystem(big_top)
    record["bussi_512"] = cg_production(out, "cg_run_512", big_system, big_top, big_pos, dt_fs=dt, ps=250.0,
                                        thermostat=TRANSPORT_DEFAULT, seed=12)
    record["box_nm"] = {"64": float(topology.box_vectors[0][0]), "512": float(big_top.box_vectors[0][0])}
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    return record


def stage_cg_errors(work: Path, args) -> dict:
    """Independent runs of one model (does the single-run D error cover their spread?) and the 1-bead models at
    5 fs (does the chosen timestep bias D?)."""
    import numpy as np

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.thermostat import TRANSPORT_DEFAULT
    from openmm_cgml.topology import CGTopology

    record_path = work / "cg_errors.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    record: dict = {"runs_ps": CG_RUN_PS, "independent_runs": {}, "timestep_1_bead": []}
    for replica, beads in ((1, 3), (5, 1)):
        base = json.loads((work / f"cg_r{replica}_b{beads}.json").read_text())
        out = Path(base["dir"])
        ref = open_dataset(out / "cg_reference.h5")
        topology = CGTopology.from_dataset(ref)
        system = CGPotential(out / "ibi").createSystem(topology)
        frames = np.linspace(ref.n_frames // 2, ref.n_frames - 1, args.error_runs).astype(int)
        runs = [cg_production(out, f"cg_indep_{k}", system, topology, ref.positions[int(f)], dt_fs=base["timestep_fs"],
                              ps=CG_RUN_PS, thermostat=TRANSPORT_DEFAULT, seed=200 + k)
                for k, f in enumerate(frames)]
        d = [r["diffusion"] for r in runs]
        record["independent_runs"][f"replica{replica}_{beads}_bead"] = {
            "timestep_fs": base["timestep_fs"], "start_frames": frames.tolist(), "runs": runs,
            "error_methods": [x["error_method"] for x in d],
            "spread": spread([x["D_nm2_per_ps"] for x in d], [x["D_err_nm2_per_ps"] for x in d]),
            "spread_particle_errors": spread([x["D_nm2_per_ps"] for x in d], [x["D_err_particles"] for x in d])}
    for replica in range(1, args.replicas + 1):
        base = cached(work / f"cg_r{replica}_b1.json")
        if not base or base["timestep_fs"] <= 5:
            continue
        out = Path(base["dir"])
        ref = open_dataset(out / "cg_reference.h5")
        topology = CGTopology.from_dataset(ref)
        system = CGPotential(out / "ibi").createSystem(topology)
        small = cg_production(out, "cg_run_5fs", system, topology, ref.positions[-1], dt_fs=5.0, ps=CG_RUN_PS,
                              thermostat=TRANSPORT_DEFAULT, seed=replica)
        chosen = base["run"]["diffusion"]
        record["timestep_1_bead"].append({
            "replica": replica, "timestep_fs": base["timestep_fs"], "D_chosen": chosen, "D_5fs": small["diffusion"],
            "chosen_over_5fs": ratio(chosen, small["diffusion"]),
            "z": (chosen["D_nm2_per_ps"] - small["diffusion"]["D_nm2_per_ps"])
            / float(np.hypot(chosen["D_err_nm2_per_ps"], small["diffusion"]["D_err_nm2_per_ps"]))})
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    return record


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
def spread(values, errs) -> dict:
    """Do the per-run errors cover the spread between runs?  chi^2 of the runs about their weighted mean (with
    its p-value), the fraction of runs within 1 and 2 of their own errors of the mean of the others, and the
    replica standard deviation against the median reported error."""
    import numpy as np
    from scipy import stats

    x, e = np.asarray(values, float), np.asarray(errs, float)
    w = 1 / e**2
    wmean = float(np.sum(w * x) / w.sum())
    chi2 = float(np.sum(((x - wmean) / e) ** 2))
    n = x.size
    # each run against the mean of the others, both with their reported errors (the claim under test)
    z = [(x[i] - np.delete(x, i).mean()) / np.hypot(e[i], np.sqrt(np.sum(np.delete(e, i) ** 2)) / (n - 1))
         for i in range(n)] if n > 1 else []
    return {"n": n, "values": x.tolist(), "errors": e.tolist(), "mean": float(x.mean()),
            "sd": float(x.std(ddof=1)), "sem": float(x.std(ddof=1) / np.sqrt(n)), "weighted_mean": wmean,
            "median_error": float(np.median(e)), "sd_over_median_error": float(x.std(ddof=1) / np.median(e)),
            "chi2": chi2, "dof": n - 1, "chi2_p_value": float(stats.chi2.sf(chi2, n - 1)),
            "z_vs_others": [float(v) for v in z],
            "within_1_error": int(np.sum(np.abs(z) <= 1)) if z else None,
            "within_2_errors": int(np.sum(np.abs(z) <= 2)) if z else None}


def yh(d: dict, viscosity_mpa_s: float, box_nm: float) -> dict:
    """A diffusion record with the Yeh-Hummer correction at ``viscosity_mpa_s`` added."""
    import numpy as np

    from openmm_cgml.analysis.msd import yeh_hummer_correction

    corr = yeh_hummer_correction(TEMPERATURE, f"{viscosity_mpa_s} mPa*s", np.eye(3) * box_nm)
    return {**d, "D_nm2_per_ps": d["D_nm2_per_ps"] + corr, "yeh_hummer_correction_nm2_per_ps": corr}


def extrapolate(d1: dict, l1: float, d2: dict, l2: float) -> dict:
    """D(L) = D_inf - c / L through two box sizes; the viscosity that c implies (c = k T xi / (6 pi eta))."""
    from openmm_cgml.analysis.msd import YEH_HUMMER_XI

    a, b = d1["D_nm2_per_ps"], d2["D_nm2_per_ps"]
    ea, eb = d1["D_err_nm2_per_ps"], d2["D_err_nm2_per_ps"]
    d_inf = (a * l1 - b * l2) / (l1 - l2)
    err = ((ea * l1) ** 2 + (eb * l2) ** 2) ** 0.5 / abs(l1 - l2)
    c = (d_inf - a) * l1  # nm^3/ps
    kt = 1.380649e-23 * 298.15
    eta = kt * YEH_HUMMER_XI / (6 * 3.141592653589793 * c * 1e-27 / 1e-12) * 1e3 if c > 0 else None
    return {"D_inf_nm2_per_ps": d_inf, "D_inf_err_nm2_per_ps": err, "implied_viscosity_mPa_s": eta}


def stage_report(work: Path, args) -> dict:
    import numpy as np
    from _common import write_result

    def load(name):
        return cached(work / f"{name}.json")

    aa = [load(f"aa_r{r}") for r in range(1, args.replicas + 1)]
    aa = [a for a in aa if a]
    figures: dict = {"aa_replicas": [{
        "seed": a["config"]["seed"], "box_nm": a["box_nm"], "production_ps": a["production_ps"],
        "density_g_cm3": a["npt_density_g_cm3"], "wall_s": a["wall_s"], "diffusion": a["diffusion"],
        "checks": [{k: c.get(k) for k in ("frames", "converged", "reason")} for c in a["diffusion_checks"] or []]}
        for a in aa]}
    dd = [a["diffusion"] for a in aa]
    figures["D_AA_64"] = spread([d["D_nm2_per_ps"] for d in dd], [d["D_err_nm2_per_ps"] for d in dd])
    figures["D_AA_64"]["all_converged"] = all(d["converged"] for d in dd)
    visc_aa, extra = load("aa_viscosity"), load("cg_extra")
    nve, large = load("aa_nve"), load("aa_128")
    mean_aa = {"D_nm2_per_ps": figures["D_AA_64"]["mean"], "D_err_nm2_per_ps": figures["D_AA_64"]["sem"],
               "converged": figures["D_AA_64"]["all_converged"]}
    box64 = float(np.mean([a["box_nm"] for a in aa]))
    if nve:  # replica 1 continued in NVE: the same density
        figures["aa_thermostat"] = {"nve": nve["diffusion"], "temperature_check": nve.get("temperature_check"),
                                    "bussi_over_nve": ratio(aa[0]["diffusion"], nve["diffusion"])}
    dense = load("aa_dense")
    if dense:
        dens = [a["npt_density_g_cm3"] for a in aa]
        lnd = [np.log(a["diffusion"]["D_nm2_per_ps"]) for a in aa]
        slope = float(np.polyfit(np.log(dens), lnd, 1)[0]) if len(aa) > 2 else None
        figures["aa_density"] = {"controlled": dense, "replica_densities_g_cm3": dens,
                                 "replica_dlnD_dlnrho_fit": slope}
    if visc_aa:
        figures["aa_viscosity"] = visc_aa
        figures["D_AA_64_yeh_hummer"] = yh(mean_aa, visc_aa["viscosity_mPa_s"], box64)
    if large:
        figures["aa_128"] = {"box_nm": large["box_nm"], "production_ps": large["production_ps"],
                             "wall_s": large["wall_s"], "diffusion": large["diffusion"]}
        figures["aa_1_over_L"] = extrapolate(mean_aa, box64, large["diffusion"], large["box_nm"])
        if visc_aa:
            figures["aa_128"]["yeh_hummer"] = yh(large["diffusion"], visc_aa["viscosity_mPa_s"], large["box_nm"])
    for beads in (3, 1):
        cg = [load(f"cg_r{r}_b{beads}") for r in range(1, args.replicas + 1)]
        cg = [c for c in cg if c]
        if not cg:
            continue
        for c in cg:  # alpha against the AA replica's current D (a replica extended later has a new one)
            c["alpha"] = ratio(c["run"]["diffusion"], load(f"aa_r{c['replica']}")["diffusion"])
        key = f"cg_{beads}_bead"
        figures[key] = {
            "ibi": [c["ibi"] for c in cg],
            "ibi_all_within_10_percent_of_best": all(c["ibi"]["final_over_best"] <= 1.1 for c in cg),
            "ibi_max_iterations": max(c["ibi"]["iterations"] for c in cg),
            "production_rdf_error": [c.get("production_rdf", {}).get("error") for c in cg],
            "production_rdf_over_kept": [c.get("production_rdf", {}).get("over_kept") for c in cg],
            "timesteps_fs": [c["timestep_fs"] for c in cg],
            "energy_drift_kT_per_ns_per_dof": [c["energy_drift_kT_per_ns_per_dof"] for c in cg],
            "D_CG": spread([c["run"]["diffusion"]["D_nm2_per_ps"] for c in cg],
                           [c["run"]["diffusion"]["D_err_nm2_per_ps"] for c in cg]),
            "D_CG_converged": [c["run"]["diffusion"]["converged"] for c in cg],
            "alpha": spread([c["alpha"]["value"] for c in cg], [c["alpha"]["err"] for c in cg]),
            "alpha_converged": [c["alpha"]["converged"] for c in cg],
        }
    if extra:
        bussi = extra["bussi"]["diffusion"]
        figures["cg_thermostat"] = {"bussi_over_nve": ratio(bussi, extra["nve"]["diffusion"]),
                                    "langevin_1ps_over_nve": ratio(extra["langevin_1ps"]["diffusion"],
                                                                   extra["nve"]["diffusion"]),
                                    "nve": extra["nve"]["diffusion"], "langevin_1ps": extra["langevin_1ps"]["diffusion"]}
        eta = extra["viscosity"]["viscosity_mPa_s"]
        l64, l512 = extra["box_nm"]["64"], extra["box_nm"]["512"]
        figures["cg_viscosity"] = extra["viscosity"]
        figures["cg_finite_size"] = {
            "box_nm": extra["box_nm"], "D_64": bussi, "D_512": extra["bussi_512"]["diffusion"],
            "D_64_yeh_hummer": yh(bussi, eta, l64), "D_512_yeh_hummer": yh(extra["bussi_512"]["diffusion"], eta, l512),
            "one_over_L": extrapolate(bussi, l64, extra["bussi_512"]["diffusion"], l512)}
        if visc_aa:
            a_raw = ratio(bussi, mean_aa)
            a_yh = ratio(yh(bussi, eta, l64), yh(mean_aa, visc_aa["viscosity_mPa_s"], box64))
            figures["alpha_replica1_3bead"] = {"uncorrected": a_raw, "yeh_hummer_both": a_yh}
    errors = load("cg_errors")
    if errors:
        figures["cg_single_run_errors"] = {
            name: {k: v for k, v in rec.items() if k != "runs"} for name, rec in errors["independent_runs"].items()}
        figures["cg_timestep_1_bead"] = errors["timestep_1_bead"]
    figures["source_003"] = {"D_AA_m2_per_s": 1.150e-9, "alpha_one_bead_ibi": 6.28,
                             "note": "OPLS-AA; a different force field: a comparison of magnitude"}
    plot(work, figures)
    write_result("study_dynamics", figures, {"replicas": args.replicas, "max_production": args.max_production,
                                             "cg_run_ps": CG_RUN_PS, "error_runs": args.error_runs, "workdir": str(work),
                                             "temperature": TEMPERATURE, "smiles": SMILES})
    return figures


def plot(work: Path, figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from openmm_cgml._io import atomic_path

    panels = [("D_AA_64", "D_AA (nm$^2$/ps), 64 molecules", figures.get("D_AA_64"))]
    panels += [(f"alpha_{b}", f"alpha, {b}-bead IBI", figures.get(f"cg_{b}_bead", {}).get("alpha")) for b in (3, 1)]
    panels = [p for p in panels if p[2]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (_, label, s) in zip(axes[0], panels, strict=True):
        n = len(s["values"])
        ax.errorbar(range(1, n + 1), s["values"], yerr=s["errors"], fmt="o", capsize=3, label="replica (s.e.)")
        ax.axhline(s["mean"], color="k", lw=1, label="mean")
        ax.axhspan(s["mean"] - s["sd"], s["mean"] + s["sd"], color="0.85", label="replica sd")
        ax.set_xlabel("replica")
        ax.set_ylabel(label)
        ax.set_xticks(range(1, n + 1))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    target = Path(__file__).resolve().parent / "results" / "study_dynamics.png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", nargs="+", choices=STAGES + ("all",))
    parser.add_argument("--workdir", type=Path, default=Path("runs/study_dynamics"))
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument("--max-production", default="120 ps")
    parser.add_argument("--error-runs", type=int, default=10, help="independent runs of one model (cg-errors)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    stages = STAGES if "all" in args.stages else args.stages
    for stage in stages:
        logger.info("stage %s", stage)
        globals()["stage_" + stage.replace("-", "_")](work, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

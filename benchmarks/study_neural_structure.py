"""Does the neural CG model beat IBI on structure once refined? (issue 21's figures)

On a finished full demo (``cgml demo``'s output: the mapped AA reference, the IBI model and the force-matched
neural model with their runs), the neural model is refined for structure (``cgml ibi`` with ``base_model``: its
network and priors fixed, pair tables grown on top by IBI until the intermolecular RDFs match), its System is
run as the demo ran the neural model (Bussi, 100 ps, the neural model's timestep), and the three models are
compared with the AA reference: intermolecular bead RDF errors, COM RDF, bonded overlaps, the three-body angular
and coordination distributions, the pressure at the AA density (molecular virial), and the force-matching error on
the mapped forces (the network alone, refined).  Stage ``force-map``: the least-noise force map
(``cgml map force_map: optimal``) fitted on the first half of the AA frames and judged on the second: the mapped
forces' variance against the sum map's, their noise fractions, and a bias test (the projection of each on the IBI
model's forces at the same CG configurations: the same mean force gives the same projection).  Stage
``force-map-train``: the demo's network and training on that map's forces of the same AA frames (equal AA cost),
both judged on the held-out time blocks against both target sets and by a 100 ps run.  Figures to
``benchmarks/results/study_neural_structure.json`` (each stage keeps the other's).

Usage::

    cgml demo examples/demo.yaml                                   # the full demo (about 40 minutes)
    python benchmarks/study_neural_structure.py --demo-output demo-output   # about half an hour on two cores
    python benchmarks/study_neural_structure.py --demo-output demo-output --stage force-map   # a minute
    python benchmarks/study_neural_structure.py --demo-output demo-output --stage force-map-train  # ~10 minutes
    python benchmarks/study_neural_structure.py --demo-output demo-output --refine-bonded     # bonded corrections too
    python benchmarks/study_neural_structure.py --demo-output demo-output --refine-bonded --bonded-update moments \
        --core-curvature 1e5                                       # smooth (moment-matching) bonded corrections
    python benchmarks/study_neural_structure.py --demo-output demo-output --stage speed       # a few minutes
    python benchmarks/study_neural_structure.py --demo-output demo-output --stage rdf-noise   # a minute
    python benchmarks/study_neural_structure.py --demo-output demo-output --stage long-runs   # 400 ps each
    python benchmarks/study_neural_structure.py --demo-output demo-output --stage three-body  # paired, a few min

Stage ``three-body`` sets each model's three-body and coordination overlaps against IBI's with a paired error
(the long runs').  Stage ``rdf-noise`` sets every model run's bead and COM RDF errors beside their sampling noise
floors (the AA reference's and the run's own, from blocks of frames).  Stage ``speed`` times the network and the
refined networks round-robin in one process (the same CG box, the same Bussi integrator at the network's
timestep; several rounds, medians, spread and load recorded): the cost of the refinement's tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


#: The demo output's model runs and Systems by model name: run file stem, System XML.
_MODEL_RUNS = {"ibi": ("cg_run", "cg_system.xml"), "neural": ("neural_run", "neural_system.xml"),
               "neural_refined": ("neural_refined_run", "neural_refined_system.xml"),
               "neural_refined_bonded": ("neural_refined_bonded_run", "neural_refined_bonded_system.xml"),
               "neural_refined_moments": ("neural_refined_moments_run", "neural_refined_moments_system.xml")}


def _rows(path: Path) -> dict:
    rows = json.loads((path / "comparison.json").read_text())["rows"]
    return {r["quantity"]: r for r in rows}


def _summary(rows: dict) -> dict:
    """The structure figures of one comparison (values and errors as the table has them)."""
    out = {"rdf_inter": {k: v["value"] for k, v in rows.items() if k.startswith("g_inter")},
           "rdf_com": rows.get("g(COM-COM)", {}).get("value"),
           "bonded_overlap": {k: v["value"] for k, v in rows.items() if k.startswith(("bond ", "angle ", "dihedral "))}}
    for key, v in rows.items():
        if key.startswith("3-body angle"):
            out["three_body_overlap"] = [v["value"], v.get("value_err")]
        elif key.startswith("coordination"):
            out["coordination_overlap"] = [v["value"], v.get("value_err")]
        elif key.startswith("pressure"):
            out["pressure_bar"] = {"reference": [v["reference"], v["reference_err"]],
                                   "model": [v["model"], v["model_err"]], "difference": [v["value"], v.get("value_err")]}
        elif key == "alpha":
            out["alpha"] = [v["model"], v["model_err"]]
    return out


def _force_error(potential_terms, dataset_path: Path, frames=None) -> dict:
    """Force MSE of a CG force field on the mapped forces, over ``frames`` (default 100 frames evenly spread
    through the mapped reference, training frames included: the network and its refinement are measured on the
    same frames), with the standard error over frames."""
    import openmm
    from openmm import unit

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.topology import CGTopology

    ds = open_dataset(dataset_path)
    topology = CGTopology.from_dataset(ds)
    system = CGPotential(potential_terms).createSystem(topology)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    sq = []
    chosen = np.unique(np.linspace(0, ds.n_frames - 1, 100).round().astype(int)) if frames is None else frames
    for f in chosen:
        box = np.asarray(ds.box[f])
        box = np.diag(box) if box.ndim == 1 else box
        ctx.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
        ctx.setPositions(ds.positions[f])
        force = ctx.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
        sq.append(float(np.mean((force - ds.forces[f]) ** 2)))
    return {"mse": float(np.mean(sq)), "mse_err": float(np.std(sq, ddof=1) / np.sqrt(len(sq))), "frames": len(sq)}


def _optimal_map(aa, ref):
    """(sum mapping, least-noise mapping, its per-bead report, fit seconds), fitted on every third AA frame of the
    first half of the run."""
    from openmm_cgml.mapping import CGMapping, constraint_pairs_from_metadata, optimal_force_map

    mapping = CGMapping.from_data(ref.metadata["mapping"])
    constraints = constraint_pairs_from_metadata(aa.metadata.get("constraints"), None)
    t0 = time.perf_counter()
    optimal, report = optimal_force_map(mapping, np.asarray(aa.forces[np.arange(0, aa.n_frames // 2, 3)]),
                                        constraints)
    return mapping, optimal, report, time.perf_counter() - t0


def _run_like_demo(out: Path, system, topology, start, path: Path, dt_fs: float, metadata: dict,
                   ps: float = 100.0) -> None:
    """The demo's run of a neural model, unless ``path`` holds it already: ``ps`` (100) ps under Bussi's thermostat
    at ``dt_fs``, stepping down to half of it should that blow up."""
    from openmm_cgml.workflows.demo import DemoConfig, _cg_run, _completed_dataset, run_stepping_down

    if _completed_dataset(path) is not None:
        return
    demo = DemoConfig.from_data({"output": str(out)})
    run_stepping_down(lambda dt, attempt: _cg_run(demo.model_copy(update={"overwrite": attempt > 0}), path, topology,
                                                 system, start, timestep=f"{dt:g} fs",
                                                 steps=int(ps * 1000 / dt) // 25 * 25, equilibration_steps=1000,
                                                 metadata=metadata, progress=True), [dt_fs, dt_fs / 2])


def force_map_stage(out: Path) -> dict:
    """The least-noise force map on the demo's AA frames: fitted on the first half, judged on the second."""
    import openmm
    from openmm import unit

    from openmm_cgml.analysis import force_noise_fraction
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system

    aa, ref = open_dataset(out / "aa.h5"), open_dataset(out / "cg_reference.h5")
    mapping, optimal, report, fit_s = _optimal_map(aa, ref)
    half = aa.n_frames // 2
    held = np.asarray(aa.forces[half:], dtype=np.float64)
    summed, best = mapping.map_forces(held), optimal.map_forces(held)
    system = load_system(out / "cg_system.xml")
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    proj_sum, proj_opt = [], []
    for k, f in enumerate(range(half, ref.n_frames)):
        box = np.asarray(ref.box[f])
        ctx.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in (np.diag(box) if box.ndim == 1 else box)))
        ctx.setPositions(ref.positions[f])
        model = ctx.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
        proj_sum.append(float(np.sum(model * summed[k])))
        proj_opt.append(float(np.sum(model * best[k])))
    diff = np.array(proj_opt) - np.array(proj_sum)
    blocks = [b.mean() for b in np.array_split(diff, 10)]
    scale = float(np.mean(proj_sum))
    return {"fit_frames": int(np.arange(0, half, 3).size), "judged_frames": int(held.shape[0]), "fit_s": fit_s,
            "variance_ratio_by_bead": {k: v["variance_ratio"] for k, v in report.items()},
            "variance_ratio_held_out": float((best**2).mean() / (summed**2).mean()),
            "noise_sum_map": force_noise_fraction(summed), "noise_optimal_map": force_noise_fraction(best),
            "projection_on_ibi_forces_relative_difference": [float(diff.mean() / scale),
                                                             float(np.std(blocks, ddof=1) / np.sqrt(10) / scale)]}


def force_map_train_stage(out: Path) -> dict:
    """Noise-reduced targets at equal AA cost: the demo's network, trained on the sum map's forces, against the
    same network and training (out/train.yaml) on the least-noise map's forces of the same AA frames (the map
    fitted on the first half's frames).  Both are judged on the held-out time blocks against both target sets
    (a lower-noise target measures the error of the mean force more sharply), and by a 100 ps run compared with
    the AA reference as the demo compares its models."""
    import dataclasses

    import yaml

    from openmm_cgml.dataset import open_dataset, write_dataset
    from openmm_cgml.forces.xml import save_system
    from openmm_cgml.models import load_bundle
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.training.config import TrainingConfig
    from openmm_cgml.training.data import time_block_split
    from openmm_cgml.workflows.demo import _compare
    from openmm_cgml.workflows.train import TrainConfig, run_train

    aa, ref = open_dataset(out / "aa.h5"), open_dataset(out / "cg_reference.h5")
    optimal_path = out / "cg_reference_optimal_forces.h5"
    if not optimal_path.exists():
        _, optimal, _, _ = _optimal_map(aa, ref)
        forces = np.stack([optimal.map_forces(np.asarray(aa.forces[f], dtype=np.float64)) for f in range(aa.n_frames)])
        write_dataset(optimal_path, dataclasses.replace(ref, forces=forces),
                      metadata={"force_map": "optimal (least-noise), fitted on every third frame of the first half"})
    data = yaml.safe_load((out / "train.yaml").read_text())
    data.update(dataset=str(optimal_path), output=str(out / "neural_optimal_map"))
    t0 = time.perf_counter()
    trained = run_train(TrainConfig.from_data(data))
    train_s = time.perf_counter() - t0
    training = TrainingConfig.from_data(data["training"])
    _, val = time_block_split(ref.n_frames, training.validation_fraction, training.n_blocks, training.seed)
    bundles = {"sum_map": out / "neural" / "model.cgml", "optimal_map": trained.bundle_path}
    errors = {name: {"on_sum_map_targets": _force_error(b, out / "cg_reference.h5", val),
                     "on_optimal_map_targets": _force_error(b, optimal_path, val)} for name, b in bundles.items()}
    neural_run = open_dataset(out / "neural_run.h5")
    dt_fs = neural_run.metadata["timestep_ps"] * 1e3
    topology = CGTopology.from_dataset(ref)
    path = out / "neural_optimal_map_run.h5"
    t1 = time.perf_counter()
    system = CGPotential(trained.bundle_path).createSystem(topology)
    save_system(system, out / "neural_optimal_map_system.xml")
    _run_like_demo(out, system, topology, ref.positions[-1], path, dt_fs,
                   {"force_field": "neural CG on least-noise mapped forces"})
    _compare(out, "neural_optimal_map_run.h5", "study_compare_neural_optimal_map",
             system="neural_optimal_map_system.xml")
    if not (out / "study_compare_neural").exists():  # the demo's network, compared alike (the refine stage's)
        _compare(out, "neural_run.h5", "study_compare_neural", system="neural_system.xml")
    return {"validation_frames": int(len(val)), "train_s": train_s, "run_s": time.perf_counter() - t1,
            "run_timestep_fs": open_dataset(path).metadata["timestep_ps"] * 1e3, "force_mse": errors,
            "training": {name: {k: load_bundle(b).training.get(k) for k in ("validation", "baselines", "best_epoch")}
                         for name, b in bundles.items()},
            "structure": {name: _summary(_rows(out / f"study_compare_{name}"))
                          for name in ("neural", "neural_optimal_map")}}


def rdf_noise_stage(out: Path, suffix: str = "") -> dict:
    """Every model run's intermolecular bead g(r) against the AA reference's with its sampling noise: per bead-type
    pair, the RMS difference over 0-1.2 nm in 0.01 nm bins (IBI's error metric) and the noise floor
    sqrt(noise_AA^2 + noise_model^2), each noise the RMS block standard error of that g(r) (8 blocks of frames,
    ``targets_from_dataset(return_noise=True)``).  An error near its floor is what the sampling resolves.  The
    molecular COM g(r) the same way, on the comparison's grid (``compare_runs``: 100 bins to min(1.5 nm, half the
    box)), so its error is the comparison table's "RDF error, COM"."""
    from functools import lru_cache

    from openmm_cgml.analysis import compute_rdf, molecule_centers, rdf_difference
    from openmm_cgml.analysis.compare import _common_r_max, molecule_indices
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.ibi import rdf_error, targets_from_dataset

    cutoff, width = 1.2, 0.01
    ref, ref_noise = targets_from_dataset(out / "cg_reference.h5", cutoff, width, return_noise=True)

    def com_rdf(ds, r_max):
        centres = molecule_centers(ds.positions, molecule_indices(ds), ds.masses, box=ds.box)
        g = compute_rdf(centres, ds.box, r_max=r_max, n_bins=100, n_blocks=8)[(0, 0)]
        return g, float(np.sqrt(np.mean(g.g_err ** 2)))

    ref_ds = open_dataset(out / "cg_reference.h5")
    ref_com = lru_cache(maxsize=None)(lambda r_max: com_rdf(ref_ds, r_max))  # once per grid, not once per model
    result = {}
    for name, (stem, _) in _MODEL_RUNS.items():
        run = out / f"{stem}{suffix}.h5"
        if not run.exists():
            continue
        got, noise = targets_from_dataset(run, cutoff, width, return_noise=True)
        result[name] = {"-".join(p): {"error": rdf_error(got[p].g, ref[p].g),
                                      "noise_floor": float(np.hypot(ref_noise[p], noise[p]))} for p in ref}
        model_ds = open_dataset(run)
        r_max = _common_r_max(ref_ds, model_ds, r_max=None)
        (g_ref, n_ref), (g_mod, n_mod) = ref_com(r_max), com_rdf(model_ds, r_max)
        result[name]["COM-COM"] = {"error": rdf_difference(g_ref, g_mod), "noise_floor": float(np.hypot(n_ref, n_mod))}
    return {"cutoff_nm": cutoff, "bin_nm": width, "models": result,
            "com": "COM-COM on the comparison's grid (100 bins to min(1.5 nm, half the box))"}


def three_body_stage(out: Path, suffix: str = "_400ps", n_blocks: int = 8) -> dict:
    """Each model's many-body distributions against IBI's, paired: the difference of their overlaps with the AA
    reference's (positive: closer to AA than IBI) and its paired jackknife error over ``n_blocks`` blocks of all
    three runs (:func:`~openmm_cgml.analysis.overlap_difference_with_error`: the AA reference's noise, common to
    both overlaps, cancels).  The runs are the ``long-runs`` stage's; the cutoff and the distributions are the
    comparison's (the first minimum of the AA intermolecular g(r), :func:`compare_runs`)."""
    from openmm_cgml.analysis import overlap_difference_with_error
    from openmm_cgml.analysis.compare import _common_r_max, local_structures, molecule_indices
    from openmm_cgml.dataset import open_dataset

    ref = open_dataset(out / "cg_reference.h5")
    runs = {name: open_dataset(out / f"{stem}{suffix}.h5") for name, (stem, _) in _MODEL_RUNS.items()
            if (out / f"{stem}{suffix}.h5").exists()}
    if "ibi" not in runs:
        raise SystemExit(f"no IBI run {_MODEL_RUNS['ibi'][0]}{suffix}.h5: run the long-runs stage first")
    datasets = {"aa": ref, **runs}
    r_cut, structures = local_structures(list(datasets.values()), [molecule_indices(d) for d in datasets.values()],
                                         r_max=_common_r_max(*datasets.values(), r_max=None), n_bins=100,
                                         n_blocks=n_blocks)
    local = dict(zip(datasets, structures))
    aa, ibi = local["aa"], local["ibi"]
    result = {}
    for name, ls in local.items():
        if name in ("aa", "ibi"):
            continue
        result[name] = {key: dict(zip(("minus_ibi", "err"), overlap_difference_with_error(
            getattr(aa, attr), getattr(ls, attr), getattr(ibi, attr), getattr(aa, blocks), getattr(ls, blocks),
            getattr(ibi, blocks)))) for key, attr, blocks in (("three_body_angle", "angles", "angle_blocks"),
                                                              ("coordination", "coordination", "coordination_blocks"))}
    return {"runs": suffix.strip("_"), "r_cut_nm": r_cut, "n_blocks": n_blocks,
            "frames": {name: ls.n_frames for name, ls in local.items()}, "models": result}


def long_runs_stage(out: Path, ps: float) -> dict:
    """IBI, the network and the refined networks run ``ps`` ps each (Bussi, each at the timestep of its 100 ps
    run), compared with the AA reference, and their RDF errors set beside their noise floors
    (:func:`rdf_noise_stage`): longer runs lower the floors, so what is left of an error is the model's own."""
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows.demo import _compare

    ref = open_dataset(out / "cg_reference.h5")
    topology = CGTopology.from_dataset(ref)
    suffix = f"_{ps:g}ps"
    models = {}
    for name in ("ibi", "neural", "neural_refined", "neural_refined_bonded", "neural_refined_moments"):
        run, xml = _MODEL_RUNS[name]
        if not (out / xml).exists() or not (out / f"{run}.h5").exists():
            continue
        held = open_dataset(out / f"{run}.h5").metadata.get("temperature_check", {}).get("held", True)
        if not held:  # a model that did not hold its temperature in its 100 ps run is not run longer
            models[name] = {"skipped": f"its 100 ps run did not hold the thermostat's temperature ({run}.h5)"}
            continue
        dt_fs = open_dataset(out / f"{run}.h5").metadata["timestep_ps"] * 1e3
        t0 = time.perf_counter()
        _run_like_demo(out, load_system(out / xml), topology, ref.positions[-1], out / f"{run}{suffix}.h5", dt_fs,
                       {"force_field": f"{name} ({ps:g} ps comparison run)"}, ps=ps)
        wall = time.perf_counter() - t0
        _compare(out, f"{run}{suffix}.h5", f"study_compare_{name}{suffix}", system=xml)
        models[name] = {**_summary(_rows(out / f"study_compare_{name}{suffix}")), "timestep_fs": dt_fs,
                        "wall_s": wall}
    return {"ps": ps, "models": models, "rdf_noise": rdf_noise_stage(out, suffix)}


def speed_stage(out: Path, rounds: int = 5, steps: int = 300) -> dict:
    """Steps per second of the network and of each refined network there is, timed round-robin in this process."""
    import os
    import statistics

    import openmm

    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import load_system
    from openmm_cgml.thermostat import TRANSPORT_DEFAULT, make_integrator

    ref = open_dataset(out / "cg_reference.h5")
    dt_fs = open_dataset(out / "neural_run.h5").metadata["timestep_ps"] * 1e3
    arms = {}
    arm_names = {"network": "neural", "refined": "neural_refined", "refined_bonded": "neural_refined_bonded",
                 "refined_moments": "neural_refined_moments"}
    for name, model in arm_names.items():
        xml = _MODEL_RUNS[model][1]
        if not (out / xml).exists():
            continue
        system = load_system(out / xml)
        integrator = make_integrator(TRANSPORT_DEFAULT, temperature=298.15, timestep=dt_fs * 1e-3, system=system)
        ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
        box = np.asarray(ref.box[-1])
        ctx.setPeriodicBoxVectors(*(openmm.Vec3(*row) for row in (np.diag(box) if box.ndim == 1 else box)))
        ctx.setPositions(ref.positions[-1])
        ctx.setVelocitiesToTemperature(298.15, 1)
        integrator.step(20)  # warm up (TorchScript optimisation passes)
        arms[name] = (ctx, integrator)
    times = {name: [] for name in arms}
    load = [os.getloadavg()]
    for _ in range(rounds):
        for name, (ctx, integrator) in arms.items():
            t0 = time.perf_counter()
            integrator.step(steps)
            ctx.getState(getEnergy=True)
            times[name].append(steps / (time.perf_counter() - t0))
    load.append(os.getloadavg())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"steps_per_s": times, "median_steps_per_s": med,
            **{f"{k}_over_network": med[k] / med["network"] for k in med if k != "network"},
            "rounds": rounds, "steps_per_round": steps, "timestep_fs": dt_fs, "load_average_before_after": load}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-output", type=Path, default=ROOT / "demo-output")
    parser.add_argument("--stage", choices=("refine", "force-map", "force-map-train", "speed", "rdf-noise",
                                            "long-runs", "three-body"), default="refine")
    parser.add_argument("--run-ps", type=float, default=400.0, help="length of the long-runs stage's runs (ps)")
    parser.add_argument("--max-iterations", type=int, default=8)
    parser.add_argument("--production-steps", type=int, default=8_000)
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="IBI's tolerance on the largest RDF error (a rerun with another value continues the "
                             "refinement from its checkpoint)")
    parser.add_argument("--core-curvature", type=float, default=None,
                        help="kJ/mol/nm^2 of the correction tables' core wall (IBI's core_curvature; default 1000); "
                             "the refinement then goes to neural_refined_core<value>/")
    parser.add_argument("--refine-bonded", action="store_true",
                        help="also grow bonded correction tables from zero (bonded IBI on the network's bonds and "
                             "angles); the refinement goes to neural_refined_bonded[...]/")
    parser.add_argument("--bonded-update", choices=("boltzmann", "moments"), default="boltzmann",
                        help="with --refine-bonded: how the bonded corrections grow (IBI's bonded_update; moments: "
                             "a smooth moment-matching correction); moments go to neural_refined_moments[...]/")
    parser.add_argument("--bonded-moments", default="bond=2,angle=4",
                        help="moments per bonded kind of --bonded-update moments (IBI's bonded_moments): two for the "
                             "bimodal bond (a harmonic correction: four made it too stiff for the network's timestep)")
    parser.add_argument("--timestep-fs", type=float, default=None,
                        help="of the refinement's runs (default: half the network's timestep in the demo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.forces.xml import save_system
    from openmm_cgml.models import load_bundle
    from openmm_cgml.potential import CGPotential
    from openmm_cgml.topology import CGTopology
    from openmm_cgml.workflows.demo import _compare
    from openmm_cgml.workflows.ibi import IBIConfig, run_ibi

    out = args.demo_output.resolve()
    from _common import RESULTS

    previous = RESULTS / "study_neural_structure.json"
    kept = json.loads(previous.read_text()) if previous.exists() else {"figures": {}, "settings": {}}
    if args.stage != "refine":
        stage = {"force-map": force_map_stage, "force-map-train": force_map_train_stage, "speed": speed_stage,
                 "rdf-noise": rdf_noise_stage, "long-runs": lambda o: long_runs_stage(o, args.run_ps),
                 "three-body": lambda o: three_body_stage(o, f"_{args.run_ps:g}ps")}
        figures = {**kept["figures"], args.stage.replace("-", "_"): stage[args.stage](out)}
        write_result("study_neural_structure", figures, {**kept["settings"], "demo_output": str(out)})
        return 0
    bundle = out / "neural" / "model.cgml"
    for need in ("cg_reference.h5", "neural_run.h5", "compare", "neural_compare", "neural/model.cgml"):
        if not (out / need).exists():
            raise SystemExit(f"{out / need} is missing: run the full demo first (cgml demo examples/demo.yaml)")
    neural_run = open_dataset(out / "neural_run.h5")
    dt_fs = neural_run.metadata["timestep_ps"] * 1e3
    refine_dt = args.timestep_fs or dt_fs / 2  # Langevin runs of 100 ps and more: the demo's scan was 25 ps of NVE
    t0 = time.perf_counter()
    # pair corrections only, or bonded correction tables too (Boltzmann-inverted or moment-matching)
    variant = ("_moments" if args.bonded_update == "moments" else "_bonded") if args.refine_bonded else ""
    refine_dir = out / (f"neural_refined{variant}" if args.core_curvature is None
                        else f"neural_refined{variant}_core{args.core_curvature:g}")
    config = IBIConfig.from_data({
        **({} if args.core_curvature is None else {"core_curvature": args.core_curvature}),
        "cg_dataset": str(out / "cg_reference.h5"), "output_dir": str(refine_dir), "temperature": "298.15 K",
        "cutoff": "1.2 nm", "timestep": f"{refine_dt:g} fs", "max_iterations": args.max_iterations,
        "tolerance": args.tolerance, "equilibration_steps": 1000, "production_steps": args.production_steps,
        "sample_interval": 50, "initial": "zero", "base_model": str(bundle), "platform": "CPU",
        **({"bonded": "table", "refine_bonded": True, "bonded_update": args.bonded_update,
            **({"bonded_moments": {k: int(v) for k, v in (kv.split("=") for kv in args.bonded_moments.split(","))}}
               if args.bonded_update == "moments" else {})} if args.refine_bonded else {"bonded": "none"})})
    from openmm_cgml._checkpoint import read_checkpoint
    from openmm_cgml.exceptions import SimulationError

    failure = None
    try:
        run = run_ibi(config, progress=True)
    except SimulationError as exc:  # a blow-up is a result too: recorded with the iterations that finished
        failure, run = str(exc), None
    refine_s = time.perf_counter() - t0
    ckpt = refine_dir / "ibi_checkpoint.chk"
    history = read_checkpoint(ckpt)[0]["meta"]["history"] if ckpt.exists() else []
    key = f"refinement{variant}"
    # every other stage's and variant's figures are kept; a previous refinement with another core wall beside this
    previous_refinement = kept["figures"].get(key)
    figures = dict(kept["figures"])
    figures[key] = {"iterations": len(history), "failed": failure, "core_curvature": config.core_curvature,
                    "tolerance": config.tolerance, "refine_bonded": config.refine_bonded,
                    "bonded_update": config.bonded_update if config.refine_bonded else None,
                    "bonded_moments": config.bonded_moments if config.bonded_update == "moments" else None,
                    "best_iteration": run.result.best_iteration if run else None,
                    "stop_reason": run.result.stop_reason if run else "blew up",
                    "rdf_error_by_iteration": [h.get("error") for h in history],
                    "pressure_bar_by_iteration": [h.get("pressure_bar") for h in history],
                    "production_steps_by_iteration": [h.get("production_steps") for h in history],
                    "bonded_overlap_by_iteration": [h.get("bonded_overlap") for h in history],
                    "timestep_fs": refine_dt, "wall_s": refine_s}
    if (previous_refinement and previous_refinement.get("core_curvature", 1e3) != config.core_curvature
            and not variant):
        figures[f"refinement_core{previous_refinement.get('core_curvature', 1e3):g}"] = previous_refinement
    ref = open_dataset(out / "cg_reference.h5")
    topology = CGTopology.from_dataset(ref)
    names = [(f"{_MODEL_RUNS[m][0]}.h5", m, _MODEL_RUNS[m][1]) for m in ("ibi", "neural")]
    model = f"neural_refined{variant}"
    if run is not None:
        system = CGPotential(refine_dir).createSystem(topology)
        stem, xml = _MODEL_RUNS[model]
        save_system(system, out / xml)
        path = out / f"{stem}.h5"
        t1 = time.perf_counter()
        _run_like_demo(out, system, topology, ref.positions[-1], path, dt_fs,
                       {"force_field": "neural CG refined for structure (cgml ibi base_model"
                                       + (", bonded correction tables)" if variant else ")"),
                        "force_field_source": str(refine_dir)})
        figures[f"refined{variant}_run"] = {"timestep_fs": open_dataset(path).metadata["timestep_ps"] * 1e3,
                                            "ns_per_day": open_dataset(path).metadata.get("ns_per_day"),
                                            "wall_s": time.perf_counter() - t1}
        names.append((f"{stem}.h5", model, xml))
        figures["force_matching_mse"] = {**figures.get("force_matching_mse", {}),
                                         "network": _force_error(bundle, out / "cg_reference.h5"),
                                         f"network_refined{variant}": _force_error(refine_dir,
                                                                                   out / "cg_reference.h5")}
    # the models compared alike (the demo's own comparisons predate some rows): into study_* folders
    for run_name, name, system_xml in names:
        _compare(out, run_name, f"study_compare_{name}", system=system_xml)
    training = load_bundle(bundle).training
    figures["models"] = {**figures.get("models", {}),
                         **{name: _summary(_rows(out / f"study_compare_{name}")) for _, name, _ in names}}
    figures["neural_run"] = {"timestep_fs": dt_fs, "ns_per_day": neural_run.metadata.get("ns_per_day")}
    figures["training"] = {"validation_mse": training["validation"]["mse"],
                           "priors_alone_mse": training["baselines"].get("prior_only_mse")}
    write_result("study_neural_structure", figures, {**kept["settings"], "demo_output": str(out),
                                                     f"refinement{variant}": config.to_data()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

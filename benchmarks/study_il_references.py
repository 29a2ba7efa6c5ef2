"""The ionic liquid's AA references across temperatures, as far as they ran (issue "Temperature-transferable CG
models ... on the ionic liquid of Ruza et al.").

Reads the AA references of a temperature study (``T<K>/aa.h5`` of ``--study-output``, default
``runs/temperature_bmim_bf4_gpu``: ``examples/ionic_liquid/bmim_bf4_gpu.yaml``, prepared here and run on a GPU with
``devtools/gpu_references.py``), finished or not, and writes ``results/study_il_references.json``:

- per temperature: the NPT density (mean and spread of the second half of the NPT stage), the production recorded
  (ps, frames, finished or stopped at a budget), the platform it ran on;
- per temperature and ion: D from the molecular centre-of-mass MSD (:func:`openmm_cgml.analysis.compare.
  species_diffusion_check`: the diffusive-regime check, its fit window and the error over molecules), in the
  simulated box (no finite-size correction);
- per ion: Arrhenius fits of D(T) (:func:`openmm_cgml.analysis.fit_arrhenius`, weighted by the errors) over every
  temperature and over the diffusive ones alone, beside Ruza's AA activation energy of the cation;
- with ``--gpu-run`` (the ``run.json`` of each ``gpu_references.py run`` call, in order): the GPU's throughput per
  run (several share the GPU), from the runs' logs and checkpoints: the Langevin equilibration and the Bussi
  production steps per second.

Usage::

    python benchmarks/study_il_references.py [--study-output runs/temperature_bmim_bf4_gpu] [--gpu-run RUN.json ...]
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from _common import write_result

#: Ruza's (J. Chem. Phys. 2020) AA activation energy of self-diffusion (kJ/mol), BMIM-BF4 (its CG model: 12.49).
SOURCE_EA_AA = {"BMI": 19.95}
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _when(line: str) -> datetime | None:
    m = _STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f") if m else None


def _reference(folder: Path) -> dict:
    from openmm_cgml.analysis.compare import species_diffusion_check
    from openmm_cgml.dataset import open_dataset

    ds = open_dataset(folder / "aa.h5")
    meta = ds.metadata
    config = meta.get("configuration", {})
    diffusion = species_diffusion_check(ds)
    series = meta.get("npt_density_series_g_cm3") or []
    return {
        "temperature_K": float(meta["temperature_K"]), "atoms": int(ds.n_particles),
        "npt_density_g_cm3": meta.get("npt_density_g_cm3"),  # the second half of the NPT stage, as run_reference's
        "npt_density_std_g_cm3": float(np.std(series[len(series) // 2:])) if series else None,
        "production_ps": float(ds.time[-1] - ds.time[0]), "frames": int(ds.n_frames),
        "planned_production_ps": config.get("production"), "completed": bool(meta.get("completed")),
        "thermostat": (meta.get("thermostat") or {}).get("kind"), "platform": (meta.get("platform") or {}).get("name"),
        "D": {ion: {"D_nm2_per_ps": r["D_nm2_per_ps"], "D_err_nm2_per_ps": r["D_err_nm2_per_ps"],
                    "diffusive": bool(r["converged"]), "reason": r["reason"], "fit_range_ps": r["fit_range_ps"],
                    "molecules": r["molecules"]} for ion, r in diffusion.items()},
    }


def _arrhenius(per_t: list[dict]) -> dict:
    from openmm_cgml.analysis import fit_arrhenius

    out = {}
    for ion in per_t[0]["D"]:
        points = [(r["temperature_K"], r["D"][ion]) for r in per_t]
        fits = {}
        for label, chosen in (("all", points), ("diffusive", [p for p in points if p[1]["diffusive"]])):
            if len(chosen) < 2:
                fits[label] = {"temperatures_K": [t for t, _ in chosen], "Ea_kJ_mol": None,
                               "note": "fewer than 2 temperatures"}
                continue
            fit = fit_arrhenius([t for t, _ in chosen], [d["D_nm2_per_ps"] for _, d in chosen],
                                [d["D_err_nm2_per_ps"] for _, d in chosen])
            fits[label] = {"temperatures_K": [t for t, _ in chosen], "Ea_kJ_mol": fit.activation_energy,
                           "Ea_err_kJ_mol": fit.activation_energy_err, "chi2_per_dof": fit.chi2_per_dof}
        out[ion] = {**fits, "source_Ea_AA_kJ_mol": SOURCE_EA_AA.get(ion)}
    return out


def _gpu_throughput(study: Path, runs: list[Path]) -> dict:
    """Steps per second per run on the GPU: the equilibration (NVT + NPT, Langevin) from the logs' timestamps, the
    production (Bussi) from the checkpointed frames over the time it ran (a lower bound: frames past the last
    checkpoint of a stopped run are not counted)."""
    from openmm_cgml.config import load_config
    from openmm_cgml.reference.run import ReferenceConfig

    calls = [json.loads(p.read_text()) for p in runs]
    if not calls:
        return {}
    out = {"calls": [{"wall_s": c["wall_s"], "budget_s": c["budget_s"], "runs": len(c["runs"]),
                      "machine": c["machine"]} for c in calls], "per_run": {}}
    for folder in sorted(study.glob("T*/gpu.log")):
        folder = folder.parent
        config = load_config(folder / "reference.yaml", ReferenceConfig)
        report, n_eq = config.steps("report_interval"), config.steps("nvt") + config.steps("npt")
        lines = (folder / "gpu.log").read_text().splitlines()
        start = next((_when(x) for x in lines if "resumed from stage nvt" in x), None)
        prod = next((_when(x) for x in lines if "production box scaled" in x), None)
        resumes = [int(re.search(r"stage production, (\d+) of", x).group(1))
                   for x in lines if "resumed from stage production" in x]
        if start is None or prod is None:
            continue
        eq_s = (prod - start).total_seconds()
        record = {"equilibration_steps": n_eq, "equilibration_s": eq_s, "equilibration_steps_per_s": n_eq / eq_s}
        if resumes:  # the first call's production: from the box rescaling to the call's end (its whole wall time)
            frames = resumes[0] - 1  # checkpointed frames past frame 0, the production's start
            prod_s = calls[0]["wall_s"] - eq_s
            record.update(production_steps=frames * report, production_s=prod_s,
                          production_steps_per_s_lower_bound=frames * report / prod_s)
        out["per_run"][folder.name] = record
    eq = [r["equilibration_steps_per_s"] for r in out["per_run"].values()]
    pr = [r["production_steps_per_s_lower_bound"] for r in out["per_run"].values()
          if "production_steps_per_s_lower_bound" in r]
    if eq:
        out["equilibration_steps_per_s_median"] = float(np.median(eq))
    if pr:
        out["production_steps_per_s_median_lower_bound"] = float(np.median(pr))
        out["production_over_equilibration"] = float(np.median(pr) / np.median(eq))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study-output", type=Path, default=Path("runs/temperature_bmim_bf4_gpu"))
    parser.add_argument("--gpu-run", type=Path, nargs="*", default=[],
                        help="run.json of each gpu_references.py call, in order")
    parser.add_argument("--name", default="study_il_references")
    args = parser.parse_args(argv)
    folders = sorted((p.parent for p in args.study_output.glob("T*/aa.h5")),
                     key=lambda f: float(f.name[1:]))
    if not folders:
        raise SystemExit(f"{args.study_output} has no T<K>/aa.h5")
    per_t = [_reference(f) for f in folders]
    figures = {"references": per_t, "arrhenius": _arrhenius(per_t)}
    if args.gpu_run:
        figures["gpu"] = _gpu_throughput(args.study_output, args.gpu_run)
    settings = {"study_output": str(args.study_output),
                "reference": yaml.safe_load((folders[0] / "reference.yaml").read_text())}
    write_result(args.name, figures, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

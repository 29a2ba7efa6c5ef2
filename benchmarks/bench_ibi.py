"""IBI to convergence for single-bead 2,3,4-trimethylpentane (64 molecules): iterations and cost vs AA.

One run: the AA reference (OpenFF Sage 2.2.0 + AM1-BCC, PME 0.9 nm, HBonds, 2 fs) records the
targets; its wall time (all stages, and the production stage alone) is the cost unit.  The AA
dataset is mapped to one bead per molecule, the target g(r) computed, and IBI run in OpenMM until
the RDF error (RMS of g - g_target, max over pairs) falls below the tolerance.  The tolerance is
set from the target's own statistical noise: the RMS difference between the g(r) of the first and
second halves of the AA trajectory (at least 0.02).

Usage: python benchmarks/bench_ibi.py [--production-ps 40] [--workdir /tmp/ibi_bench]
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
from _trimethylpentane import N_MOL, TEMPERATURE, aa_reference, map_reference  # noqa: E402

from openmm_cgml._io import atomic_write_text, machine_info, package_versions  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--production-ps", type=float, default=40.0)
    parser.add_argument("--workdir", default="/tmp/ibi_bench")
    parser.add_argument("--cg-timestep-fs", type=float, default=10.0)
    parser.add_argument("--production-steps", type=int, default=10000)
    parser.add_argument("--max-iterations", type=int, default=30)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from openmm_cgml.dataset import open_dataset
    from openmm_cgml.ibi import IBISettings, IterativeBoltzmannInversion, rdf_error, targets_from_dataset

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result, aa_wall, config = aa_reference(work, args.production_ps)
    aa_production_wall = aa_wall * config.steps("production") / sum(
        config.steps(s) for s in ("nvt", "npt", "production"))
    print(f"AA reference: {aa_wall:.0f} s wall in all ({aa_production_wall:.0f} s production estimate)")
    t0 = time.perf_counter()
    mapping, cg_path = map_reference(result, work, 1)
    ds = open_dataset(cg_path)
    cutoff = min(1.2, 0.5 * float(np.diag(ds.box[-1]).min()) - 0.01)
    targets = targets_from_dataset(ds, cutoff, 0.01)
    half = ds.n_frames // 2
    from openmm_cgml.dataset import Dataset

    def sub(sl):
        return Dataset(**{**{f: getattr(ds, f) for f in Dataset.__dataclass_fields__},
                          "positions": ds.positions[sl], "box": ds.box[sl]})

    g1 = targets_from_dataset(sub(slice(0, half)), cutoff, 0.01)
    g2 = targets_from_dataset(sub(slice(half, None)), cutoff, 0.01)
    noise = max(rdf_error(g1[p].g, g2[p].g) for p in targets)
    tolerance = max(0.02, noise)
    settings = IBISettings(temperature=f"{TEMPERATURE} K", cutoff=f"{cutoff} nm", bin_width="0.01 nm",
                           max_iterations=args.max_iterations, damping=0.8, tolerance=tolerance,
                           timestep=f"{args.cg_timestep_fs} fs",
                           equilibration_steps=1000, production_steps=args.production_steps, sample_interval=50,
                           platform="CPU")
    info = mapping.cg_topology(ds.box[-1])
    ibi = IterativeBoltzmannInversion(info, ds.positions[-1], targets, settings)
    res = ibi.run(work / "ibi", overwrite=True, progress=True)
    ibi_wall = time.perf_counter() - t0
    report = {
        "benchmark": "bench_ibi", "molecule": "2,3,4-trimethylpentane", "n_molecules": N_MOL, "mapping": "1 bead",
        "temperature_K": TEMPERATURE,
        "aa_reference": {"production_ps": args.production_ps, "frames": int(open_dataset(result.dataset).n_frames),
                         "wall_s_all_stages": aa_wall, "wall_s_production_estimate": aa_production_wall},
        "ibi": {"converged": res.converged, "iterations": res.iterations, "best_iteration": res.best_iteration,
                "tolerance": tolerance, "target_noise_rms_half_vs_half": noise,
                "errors": [h["error"] for h in res.history], "pressures_bar": [h["pressure_bar"] for h in res.history],
                "wall_s_including_mapping_and_targets": ibi_wall, "cutoff_nm": cutoff,
                "cg_timestep_fs": args.cg_timestep_fs, "steps_per_iteration": args.production_steps + 1000},
        "cost_ratio_ibi_over_aa_all_stages": ibi_wall / aa_wall,
        "cost_ratio_ibi_over_aa_production": ibi_wall / aa_production_wall,
        "goals": {"iterations_le_30": res.converged and res.iterations <= 30,
                  "cost_le_0.5x_aa": ibi_wall / aa_wall <= 0.5},
        "machine": machine_info(), "package_versions": package_versions(),
    }
    out = Path(__file__).parent / "results" / "bench_ibi.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("ibi", "cost_ratio_ibi_over_aa_all_stages",
                                              "cost_ratio_ibi_over_aa_production")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

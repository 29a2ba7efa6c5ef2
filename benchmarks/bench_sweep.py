"""Parameter sweeps on Dask: samples per hour per core (fast united-atom family and OpenFF TMP), the scheduler's
overhead per task as a fraction of the task, and the data sweeps of the dynamic-rescaling study.

The fast family runs ``examples/sweep.yaml`` and TMP ``examples/sweep_tmp.yaml`` (Bag et al.'s study (J. Chem. Theory Comput. 2022): Sage 2.2.0
bonded parameters of 2,3,4-trimethylpentane varied), each with ``--fast-samples`` / ``--tmp-samples`` samples,
into ``--outdir`` (default ``runs/sweeps/``, outside git): ``runs/sweeps/fast/index.csv`` and
``runs/sweeps/tmp/index.csv`` are the data of the next issue (learning alpha).  Rerunning resumes (finished
samples are skipped), so the figures come from the samples computed in this run.

``--tiny`` shrinks every run (boxes, times, IBI) to check the script in a minute; its figures go to
``results/bench_sweep_tiny.json`` and say nothing about real costs.

The cost of Bag et al.'s 300-sample TMP study on a GPU cluster (docs/guide/sweeps.md) is estimated from the
measured CPU cost per sample split by step, with the AA and CG speeds on a GPU given by ``--gpu-aa-ns-per-day``
and ``--gpu-cg-speedup`` (measure them on the target GPU with benchmarks/bench_aa_reference.py and
bench_cg_speed.py): ``hours = N * (t_AA_gpu + t_rest) / n_gpus``.

Usage::

    python benchmarks/bench_sweep.py --fast-samples 200 --tmp-samples 16      # the data sweeps (hours)
    python benchmarks/bench_sweep.py --tiny --fast-samples 4 --tmp-samples 1   # a check of the script
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TINY_FAST = {"molecule": {"count": 27, "cutoff": "0.7 nm"},
             "pipeline": {"aa": {"nvt": "1 ps", "production": "5 ps", "report_interval": "0.1 ps"},
                          "ibi": {"max_iterations": 1, "equilibration_steps": 100, "production_steps": 400,
                                  "sample_interval": 20},
                          "cg": {"duration": "4 ps", "equilibration_steps": 100, "report_interval": "0.1 ps"}}}
TINY_TMP = {"molecule": {"count": 27, "cutoff": "0.9 nm", "density": "0.70 g/cm**3"},
            "pipeline": {"beads": 1,
                         "aa": {"nvt": "1 ps", "npt": "2 ps", "production": "4 ps", "max_production": None,
                                "report_interval": "0.1 ps"},
                         "ibi": {"max_iterations": 1, "equilibration_steps": 100, "production_steps": 400,
                                 "sample_interval": 20},
                         "cg": {"duration": "4 ps", "equilibration_steps": 100, "report_interval": "0.1 ps"}}}


def _merge(data: dict, over: dict) -> dict:
    out = dict(data)
    for key, value in over.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) and key != "ibi" else value
    return out


def run_family(example: str, n_samples: int, outdir: Path, *, tiny: dict | None, workers: int | None) -> dict:
    import yaml

    from openmm_cgml.sweep import SweepConfig, run_sweep

    data = yaml.safe_load((ROOT / "examples" / example).read_text())
    data["sampling"]["n_samples"] = n_samples
    data["execution"] = {**data.get("execution", {}), "cluster": "local", "workers": workers}
    if tiny:
        data = _merge(data, tiny)
        if "ibi" in tiny.get("pipeline", {}):
            data["pipeline"]["ibi"] = tiny["pipeline"]["ibi"]
    config = SweepConfig.from_data(data)
    load_before = os.getloadavg()
    result = run_sweep(config, outdir, progress=True)
    load_after = os.getloadavg()
    import json

    records = [json.loads(p.read_text()) for p in sorted(outdir.glob("samples/*/result.json"))]
    walls = [r["wall_s"] for r in records]
    cpus = [r["cpu_s"] for r in records if r.get("cpu_s") is not None]
    steps = {k: float(np.median([r["timings_s"][k] for r in records])) for k in ("aa", "map", "ibi", "cg", "compare")} \
        if records else {}
    threads = config.pipeline.threads or 1
    slots = result.timing.get("workers") or 1
    cores = slots * threads
    # throughput of this run (samples computed per wall hour per core) and of every finished sample (from its own
    # wall time, so that a resumed sweep still has it)
    per_hour_core = result.computed / (result.wall_s * cores) * 3600 if result.computed and result.wall_s else None
    return {
        "samples": result.n_samples, "computed_this_run": result.computed, "failed": result.failed,
        "finished_total": len(records), "wall_s": result.wall_s, "workers": slots, "threads_per_task": threads,
        "samples_per_hour_per_core_this_run": per_hour_core,
        "samples_per_hour_per_core": 3600 / (float(np.median(walls)) * threads) if walls else None,
        "core_seconds_per_sample_median": float(np.median(walls)) * threads if walls else None,
        # the worker process's CPU seconds per sample (samples finished by this code): not inflated by other load
        "cpu_seconds_per_sample_median": float(np.median(cpus)) if cpus else None,
        "step_seconds_median": steps,
        "scheduler_roundtrip_s": result.timing.get("scheduler_roundtrip_s"),
        "result_latency_median_s": result.timing.get("result_latency_median_s"),
        "scheduler_overhead_fraction": result.timing.get("overhead_fraction"),
        "index": str(result.index),
        "load_average_1_5_15_min_before_after": [list(load_before), list(load_after)],
        "converged_fraction": (float(np.mean([bool(r.get("alpha_converged")) for r in records]))
                               if records else None),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast-samples", type=int, default=200)
    parser.add_argument("--tmp-samples", type=int, default=16)
    parser.add_argument("--outdir", type=Path, default=ROOT / "runs" / "sweeps")
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    parser.add_argument("--tiny", action="store_true", help="tiny runs: checks the script, not the costs")
    parser.add_argument("--gpu-aa-ns-per-day", type=float, default=None,
                        help="AA TMP speed on the target GPU (ns/day), for the cost of Bag et al.'s study (J. Chem. Theory Comput. 2022)")
    parser.add_argument("--gpu-cg-speedup", type=float, default=1.0,
                        help="how much faster the IBI + CG steps run per sample on a GPU node (default 1: CPU)")
    parser.add_argument("--study-samples", type=int, default=300)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import json

    from _common import RESULTS

    name = "bench_sweep_tiny" if args.tiny else "bench_sweep"
    previous = RESULTS / f"{name}.json"
    # a run of one family keeps the other family's figures from the last run
    figures = json.loads(previous.read_text())["figures"] if previous.exists() else {}
    settings = {"tiny": args.tiny, "outdir": str(args.outdir), "cores": os.cpu_count()}
    if args.fast_samples:
        figures["fast"] = run_family("sweep.yaml", args.fast_samples, args.outdir / ("fast-tiny" if args.tiny else
                                                                                     "fast"),
                                     tiny=TINY_FAST if args.tiny else None, workers=args.workers)
    if args.tmp_samples:
        tmp = figures["tmp"] = run_family("sweep_tmp.yaml", args.tmp_samples,
                                          args.outdir / ("tmp-tiny" if args.tiny else "tmp"),
                                          tiny=TINY_TMP if args.tiny else None, workers=args.workers)
        import yaml

        from openmm_cgml.sweep import SweepConfig

        cfg = SweepConfig.from_data(yaml.safe_load((ROOT / "examples" / "sweep_tmp.yaml").read_text()))
        aa = cfg.pipeline.aa
        aa_ns = (aa.nvt + aa.npt + (aa.max_production or aa.production)) * 1e-3  # worst case: the full budget
        rest = sum(v for k, v in tmp["step_seconds_median"].items() if k != "aa") if tmp["step_seconds_median"] else None
        study = {"samples": args.study_samples, "gpus": args.gpus, "aa_ns_per_sample_max": aa_ns,
                 "cpu_core_hours_measured": (tmp["core_seconds_per_sample_median"] or 0) * args.study_samples / 3600}
        if args.gpu_aa_ns_per_day and rest is not None:
            per = aa_ns / args.gpu_aa_ns_per_day * 86400 + rest / args.gpu_cg_speedup
            study.update({"gpu_seconds_per_sample": per,
                          "gpu_hours_total": per * args.study_samples / 3600,
                          "wall_hours_on_gpus": per * args.study_samples / 3600 / args.gpus})
        figures["bag2022_study"] = study
    write_result(name, figures, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

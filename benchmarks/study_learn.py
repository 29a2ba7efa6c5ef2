"""Learned alpha and potentials on the fast-family sweeps (issue 14's figures): ``cgml learn`` with
``examples/learn.yaml`` on ``runs/sweeps/fast`` (written by ``python benchmarks/bench_sweep.py``), its evaluation on
the held-out samples copied to ``benchmarks/results/study_learn.json`` and the parity plot to
``benchmarks/results/study_learn.png``.  ``--config examples/learn_transfer.yaml --name study_learn_transfer``:
the same across molecules (molecule descriptors; isopentane, n-pentane, n-hexane and 2,3-dimethylbutane learned,
2-methylpentane held out), figures for the held-out molecule too.  ``--config examples/learn_tmp.yaml --name
study_learn_tmp``: the OpenFF 2,3,4-trimethylpentane sweep (a few samples: leave-one-out cross-validation).

Usage::

    python benchmarks/bench_sweep.py --fast-samples 200 --tmp-samples 0   # the sweep (about an hour on two cores)
    python benchmarks/study_learn.py                                      # a few minutes
    for m in npentane nhexane 23dimethylbutane 2methylpentane; do          # about 20 min each on two cores
        cgml sweep examples/transfer/$m.yaml -o runs/sweeps/$m; done
    python benchmarks/study_learn.py --config examples/learn_transfer.yaml --name study_learn_transfer
    cgml sweep examples/sweep_tmp_learn.yaml                               # hours: about 20 CPU-min per sample
    python benchmarks/study_learn.py --config examples/learn_tmp.yaml --name study_learn_tmp
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _sample_rows(config, base: Path) -> list[dict]:
    """Every sample of the sweeps (used or not): parameters, D_AA, D_CG, alpha with errors and flags, RDF error."""
    import pandas as pd

    keep = ("sample_id", "status", "temperature_K", "D_AA", "D_AA_err", "D_AA_converged", "D_CG", "D_CG_err",
            "D_CG_converged", "alpha", "alpha_err", "alpha_converged", "rdf_error", "ibi_rdf_error", "cg_timestep_fs",
            "finite_size", "cpu_s")
    import yaml

    from openmm_cgml.sweep import SweepConfig

    rows = []
    for sweep in config.sweeps:
        directory = base / sweep
        definition = SweepConfig.from_data(yaml.safe_load((directory / "sweep.yaml").read_text()))
        frame = pd.read_csv(directory / "index.csv")
        params = [p.column() for p in definition.parameters if p.column() in frame.columns]
        rows += frame[[c for c in (*keep[:3], *params, *keep[3:]) if c in frame.columns]].to_dict("records")
    return rows


def main(argv=None) -> int:
    import yaml

    from openmm_cgml.learn import LearnConfig, run_learn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "learn.yaml")
    parser.add_argument("--name", default="study_learn", help="results/<name>.json and .png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data = yaml.safe_load(args.config.read_text())
    config = LearnConfig.from_data(data)
    t0 = time.perf_counter()
    result = run_learn(config, base=args.config.parent, progress=True)
    wall = time.perf_counter() - t0
    ev = result.evaluation
    sets = [k for k in ("train", "validation", "test", "holdout") if k in ev]
    figures = {"alpha": {k: {kk: v for kk, v in ev[k].items() if kk not in ("measured", "predicted", "predicted_sd_ln")}
                         for k in sets},
               "alpha_constant_baseline": ev["constant_baseline"], "alpha_measurement": ev["measurement"],
               "alpha_test_points": {k: ev["test"][k] for k in ("measured", "predicted", "predicted_sd_ln")},
               "excluded_samples": ev["excluded_samples"], "wall_s": wall}
    if "holdout" in ev:
        figures["holdout_molecules"] = config.holdout
        figures["alpha_constant_baseline_holdout"] = ev["constant_baseline_holdout"]
        figures["alpha_holdout_points"] = {k: ev["holdout"][k] for k in ("measured", "predicted", "predicted_sd_ln")}
    if "potential" in ev:
        figures["potential"] = {"pca_components": ev["potential"]["pca_components"],
                                "pca_variance": ev["potential"]["pca_variance"],
                                "table_rms_kT_median": {k: v["table_rms_kT_median"]
                                                        for k, v in ev["potential"]["tables"].items()},
                                "simulated": ev["potential"].get("simulated"),
                                "simulated_holdout": ev["potential"].get("simulated_holdout")}
    if "dynamics" in ev:
        figures["dynamics"] = ev["dynamics"]
    if "cross_validation" in ev:
        figures["cross_validation"] = ev["cross_validation"]
    figures["samples_usable"] = sum(ev[k]["n"] for k in ("train", "validation", "test"))
    if figures["samples_usable"] <= 64:  # a small (OpenFF) sweep: keep its measurements beside the figures
        figures["samples"] = _sample_rows(config, args.config.parent)
    from openmm_cgml._io import atomic_path

    with atomic_path(RESULTS / f"{args.name}.png") as tmp:
        shutil.copyfile(result.output / "alpha_parity.png", tmp)
    where = args.config.resolve()
    where = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    write_result(args.name, figures, {"config": str(where), "learn": config.to_data()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

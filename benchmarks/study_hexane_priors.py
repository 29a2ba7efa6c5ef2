"""Does the network beat its priors on a second molecule? n-hexane, 2 beads (issue 21's second-molecule check).

The first round saw the network on n-hexane do no better than its priors (validation force MSE 2.9009e5 against
2.9004e5) with no warning.  Here, with the same workflows a user runs (``cgml reference``, ``cgml map``, ``cgml
train`` as library calls): 64 n-hexane (OpenFF Sage 2.2.0, AM1-BCC), 240 ps of NVT production recorded every
0.2 ps, mapped to 2 beads, then ``examples/train.yaml``'s network and training (the demo's: 20 epochs, priors
auto) trained with two seeds.
Each training reports its validation force MSE, its priors' alone, and their margin (``prior_margin``: the
relative improvement and its block standard error on the held-out frames).  The margin counts as real when it
exceeds twice its standard error and the spread between the two seeds.

Usage: python benchmarks/study_hexane_priors.py [--workdir runs/hexane] [--production-ps 240]   (~35 min, 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "hexane")
    parser.add_argument("--production-ps", type=float, default=240.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    from openmm_cgml.config import load_config
    from openmm_cgml.reference import ReferenceConfig
    from openmm_cgml.workflows import MapConfig, TrainConfig, run_map, run_reference, run_train

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    reference = yaml.safe_load((ROOT / "examples" / "reference_tmp.yaml").read_text())
    reference.update(components=[{"smiles": "CCCCCC", "count": 64, "name": "HEX"}], density="0.65 g/cm**3",
                     production=f"{args.production_ps} ps", report_interval="0.2 ps", platform="CPU")
    (work / "reference.yaml").write_text(yaml.safe_dump(reference))
    t0 = time.perf_counter()
    run_reference(load_config(work / "reference.yaml", ReferenceConfig), work / "aa.h5")
    aa_s = time.perf_counter() - t0
    run_map(MapConfig.from_data({"input": str(work / "aa.h5"), "output": str(work / "cg.h5"),
                                 "mapping_out": str(work / "mapping.json"),
                                 "mapping": {"method": "automatic", "n_beads": 2, "weights": "com"}}))
    train = yaml.safe_load((ROOT / "examples" / "train.yaml").read_text())  # the demo's network and training
    runs = {}
    for seed in args.seeds:
        data = {**train, "dataset": str(work / "cg.h5"), "output": str(work / f"train_seed{seed}"), "resume": True,
                "training": {**train["training"], "seed": seed}}
        t1 = time.perf_counter()
        result = run_train(TrainConfig.from_data(data))
        b = result.baselines
        runs[f"seed{seed}"] = {"validation_mse": float(result.best_validation_mse),
                               "prior_only_mse": b.get("prior_only_mse"), "zero_force_mse": b.get("zero_force_mse"),
                               "prior_margin": b.get("prior_margin"), "force_noise": b.get("force_noise"),
                               "train_s": time.perf_counter() - t1}
    improvements = [r["prior_margin"]["relative_improvement"] for r in runs.values()]
    errors = [r["prior_margin"]["relative_improvement_err"] for r in runs.values()]
    spread = max(improvements) - min(improvements)
    figures = {"runs": runs, "aa_s": aa_s, "improvement_over_priors": improvements,
               "improvement_err": errors, "seed_spread": spread,
               "beats_priors": bool(min(improvements) > max(2 * max(errors), spread))}
    write_result("study_hexane_priors", figures, {"molecules": 64, "beads_per_molecule": 2,
                                                  "production_ps": args.production_ps, "seeds": args.seeds,
                                                  "training": train})
    return 0


if __name__ == "__main__":
    sys.exit(main())

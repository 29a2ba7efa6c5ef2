"""Neural CG cost against system size: MD step time per bead and memory, 192 to ~10^5 beads (CPU, one thread).

The 3-bead 2,3,4-trimethylpentane liquid of ``bench_neural.py`` (the production architecture: hidden 32, two
interactions, cutoffs 0.6 / 1.0 nm, float32, with its repulsion, bond and angle priors in OpenMM) in boxes of
64 x 8^k molecules at the liquid density, run with Langevin dynamics at 5 fs so that the Verlet lists rebuild as
they do in a simulation.  At each size the compiled C++ network (``backend="compiled"``, filter tables) and,
up to ``--torch-max`` beads, TorchForce (``backend="torch"``) are timed round-robin in one process (several
rounds, medians, spread, the machine's load).  Memory: the process's resident-set growth when each Context is
created and first evaluated.  Goal (issue 17, item 3): cost per bead-step flat (within 1.5x) from 192 to 10^5
beads.  The network's weights are untrained (the cost does not depend on their values).

Run: ``python benchmarks/bench_neural_scaling.py [--quick]``; writes ``benchmarks/results/bench_neural_scaling.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved, load_average, write_result  # noqa: E402
from bench_neural import _context, make_model, tmp_system  # noqa: E402

from openmm_cgml.forces.neural import NeuralForceTerm  # noqa: E402
from openmm_cgml.models import save_bundle  # noqa: E402

logger = logging.getLogger("bench_neural_scaling")


def _rss_mb() -> float:
    """This process's resident set size, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1,536 beads, 3 rounds")
    parser.add_argument("--torch-max", type=int, default=12288, help="largest size TorchForce is timed at (beads)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    multiples = (1, 8) if args.quick else (1, 8, 64, 512)
    rounds = 3 if args.quick else args.rounds
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        # one-off costs (the plugin, OpenMM's and PyTorch's first Contexts) before any memory is measured
        info, pos, _ = tmp_system(64)
        warm = save_bundle(Path(tmp) / "warm.cgml", make_model(info), info)
        for backend in ("compiled", "torch"):
            ctx, integ = _context(info, NeuralForceTerm(warm, backend=backend), pos, 0.005)
            integ.step(10)
            del ctx, integ
        for m in multiples:
            info, pos, box = tmp_system(64 * m)
            n = len(info.bead_types)
            bundle = save_bundle(Path(tmp) / f"m{m}.cgml", make_model(info), info)
            steps = max(2, min(100, int(40000 / n)))
            calls, keep, memory = {}, [], {}
            arms = {"compiled": "compiled"} | ({"torchforce": "torch"} if n <= args.torch_max else {})
            for arm, backend in arms.items():
                before = _rss_mb()
                ctx, integ = _context(info, NeuralForceTerm(bundle, backend=backend), pos, 0.005)
                integ.step(10)
                memory[arm] = _rss_mb() - before
                keep.append(ctx)
                calls[arm] = (lambda integ=integ, steps=steps: integ.step(steps), steps)
            load_before = load_average()
            timing = interleaved(calls, rounds, spread=True)
            row = {"beads": n, "box_nm": box, "steps_per_block": steps, "load_before": load_before,
                   "load_after": load_average()}
            for arm, t in timing.items():
                row[arm] = {"step_ms": t["median"] * 1e3, "us_per_bead_step": t["median"] / n * 1e6,
                            "spread_us_per_bead_step": [t["min"] / n * 1e6, t["max"] / n * 1e6],
                            "rss_growth_mb": memory[arm]}
            if "torchforce" in row:
                row["torchforce_over_compiled"] = row["torchforce"]["step_ms"] / row["compiled"]["step_ms"]
            rows[str(n)] = row
            logger.info("%d beads: %s", n, {k: v for k, v in row.items() if k in arms})
            del keep
    per_bead = [r["compiled"]["us_per_bead_step"] for r in rows.values()]
    figures = {"sizes": rows, "compiled_flatness": max(per_bead) / min(per_bead),
               "goal": "compiled cost per bead-step within 1.5x from 192 to ~10^5 beads"}
    settings = {"threads": 1, "platform": "CPU", "timestep_fs": 5.0, "rounds": rounds, "quick": args.quick,
                "model": "bench_neural.make_model: hidden 32, 2 interactions, cutoffs 0.6/1.0 nm, float32, untrained",
                "method": "round-robin blocks of Langevin steps per size (compiled and TorchForce), medians"}
    write_result("bench_neural_scaling", figures, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Force-matching training throughput against a peer: this package's trainer path against torchmd-net's.

Both arms take optimiser steps of 16 frames of the same mapped data (the 3-bead 2,3,4-trimethylpentane liquid of
``bench_neural.py``, 192 beads per frame, periodic) with a force MSE loss and Adam, on the CPU with one thread,
timed round-robin in one process (several rounds of one pass over the same batches; medians, spread, load):

- **ours**: :class:`~openmm_cgml.models.CGSchNet` at the production size (hidden 32, 16 Gaussians, two hybrid
  steps, i.e. four continuous-filter convolutions, cutoffs 0.6 / 1.0 nm, float32) without priors, through what
  ``ForceMatchingTrainer`` runs (``accumulate_force_loss`` with its cached pair lists);
- **torchmd-net**: its ``TorchMD_GN`` graph network (SchNet-style) of the same size (width 32, 16 Gaussians, four
  interaction layers, cutoff 1.0 nm, shifted softplus, float32) with ``derivative=True``, forces from autograd with
  the graph kept for the weight gradients, as its training module does; one call per batch.

torchmd-net 3.1.0 is a benchmark-only peer, never a dependency: when it is missing the script installs it with
``pip --no-deps`` beside ``warp-lang``, ``ase`` and ``lightning-utilities`` (its dependencies ``lightning`` and
``torch_geometric`` are not needed for the model).  Goal (issue 17, item 6): ours at least as fast.

Run: ``python benchmarks/bench_training_peer.py [--quick] [--cg-dataset PATH]``; writes
``benchmarks/results/bench_training_peer.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved, load_average, write_result  # noqa: E402

from openmm_cgml.models import CGSchNet  # noqa: E402
from openmm_cgml.training import PairCache, accumulate_force_loss, load_force_data  # noqa: E402

logger = logging.getLogger("bench_training_peer")
PEER = ("torchmd-net==3.1.0", "warp-lang", "ase", "lightning-utilities")
WIDTH, N_RBF, CUTOFF = 32, 16, 1.0


def ensure_peer() -> str:
    """torchmd-net's version, installing it (``pip --no-deps``) when it is missing."""
    if importlib.util.find_spec("torchmdnet") is None:
        logger.info("installing the benchmark-only peer: pip install --no-deps %s", " ".join(PEER))
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *PEER], check=True)
    from importlib.metadata import version

    return version("torchmd-net")


def peer_model(n_types: int):
    from torchmdnet.models.model import create_model

    args = {"model": "graph-network", "embedding_dimension": WIDTH, "num_layers": 4, "num_rbf": N_RBF,
            "rbf_type": "gauss", "trainable_rbf": False, "activation": "ssp", "cutoff_lower": 0.0,
            "cutoff_upper": CUTOFF, "max_z": n_types, "max_num_neighbors": 128, "aggr": "add",
            "neighbor_embedding": False, "derivative": True, "atom_filter": -1, "prior_model": None,
            "output_model": "Scalar", "reduce_op": "add", "precision": 32}
    return create_model(args)


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 batches per pass, 3 rounds")
    parser.add_argument("--cg-dataset", default="/tmp/neural_bench/cg3.h5",
                        help="mapped 3-bead dataset (bench_neural.py makes it, or benchmarks/_trimethylpentane.py)")
    parser.add_argument("--workdir", default="/tmp/neural_bench", help="where the AA reference runs if needed")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    peer_version = ensure_peer()
    cg_path = Path(args.cg_dataset)
    if not cg_path.exists():
        from _trimethylpentane import aa_reference, map_reference

        result, _, _ = aa_reference(Path(args.workdir), 40.0, reuse=True)
        _, cg_path = map_reference(result, Path(args.workdir), 3)
    data = load_force_data(cg_path)
    info = data.topology
    n_batches = 2 if args.quick else 4
    batch = 16
    frames = np.arange(min(data.n_frames, n_batches * batch))
    batches = [frames[k:k + batch] for k in range(0, len(frames), batch)]
    types = sorted(set(info.bead_types))
    torch.manual_seed(0)
    ours = CGSchNet(types, hidden=WIDTH, n_rbf=N_RBF, n_interactions=2, intra_cutoff=0.6, inter_cutoff=CUTOFF,
                    dtype="float32").bind(info.replace(box_vectors=None))
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-4)
    cache = PairCache(data, ours.cutoff)  # what the trainer builds once: dataset positions never change

    def ours_pass():
        for idx in batches:
            ours_opt.zero_grad()
            accumulate_force_loss(ours, data, idx, pair_cache=cache)
            ours_opt.step()

    torch.manual_seed(0)
    peer = peer_model(len(types))
    peer_opt = torch.optim.Adam(peer.parameters(), lr=1e-4)
    lookup = {t: k for k, t in enumerate(types)}
    z_frame = torch.tensor([lookup[t] for t in info.bead_types], dtype=torch.long)
    n = len(info.bead_types)
    peer_batches = []
    for idx in batches:
        pos = data.positions[idx].reshape(-1, 3).clone()
        box = data.boxes[idx[0]].clone()
        if not torch.allclose(data.boxes[idx], box.expand(len(idx), 3, 3)):
            raise SystemExit("the batch's frames have different boxes; torchmd-net takes one box per call")
        peer_batches.append((z_frame.repeat(len(idx)), pos, torch.arange(len(idx)).repeat_interleave(n), box,
                             data.forces[idx].reshape(-1, 3), len(idx)))

    def peer_pass():
        for z, pos, batch_index, box, ref, count in peer_batches:
            peer_opt.zero_grad()
            _, neg_dy = peer(z, pos.requires_grad_(True), batch_index, box=box, num_systems=count)
            ((neg_dy - ref) ** 2).mean().backward()
            peer_opt.step()

    load_before = load_average()
    timing = interleaved({"ours": (ours_pass, len(frames)), "torchmd_net": (peer_pass, len(frames))},
                         3 if args.quick else args.rounds, spread=True)
    figures = {"beads_per_frame": n, "frames_per_batch": batch, "frames_per_pass": len(frames),
               "load_before": load_before, "load_after": load_average(),
               "parameters": {"ours": _parameters(ours), "torchmd_net": _parameters(peer)}}
    for arm, t in timing.items():
        figures[arm] = {"frames_per_s": 1 / t["median"], "spread_frames_per_s": [1 / t["max"], 1 / t["min"]]}
    figures["ours_over_torchmd_net"] = figures["ours"]["frames_per_s"] / figures["torchmd_net"]["frames_per_s"]
    figures["goal"] = "ours at least as fast (ratio >= 1)"
    settings = {"threads": 1, "dataset": str(cg_path), "rounds": 3 if args.quick else args.rounds,
                "torchmd_net": peer_version, "quick": args.quick,
                "ours": "CGSchNet hidden 32, 16 Gaussians, 2 hybrid steps (4 CFConvs), cutoffs 0.6/1.0 nm, no priors",
                "peer": "TorchMD_GN width 32, 16 Gaussians, 4 layers, cutoff 1.0 nm, derivative=True",
                "method": "round-robin passes of 16-frame Adam steps on force MSE, medians"}
    write_result("bench_training_peer", figures, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

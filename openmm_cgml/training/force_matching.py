"""Force matching: fit a CG model's forces to mapped all-atom forces.

Minimises ``< |F_ref - F_model(x)|^2 >`` over frames of a coarse-grained dataset (the
multiscale CG / force-matching loss of sources 000 and 004), with

- a train/validation split by contiguous time blocks (neighbouring frames are
  correlated, so a random frame split would leak);
- mini-batches of frames evaluated in one vectorised pass (``energy_batch``);
- Adam, a learning-rate scheduler and early stopping on the validation loss;
- atomic checkpoints every epoch; resuming gives the same result as an uninterrupted
  run (per-epoch shuffles are derived from ``(seed, epoch)``, not from a running RNG);
- loss curves written as JSON, CSV and a PNG plot; the result saved as a model bundle.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from .._io import atomic_path, atomic_write_text
from ..config import Length, StrictModel
from ..dataset import Dataset, open_dataset
from ..exceptions import CheckpointError, ConfigurationError, DatasetError
from ..models.bundle import save_bundle
from ..models.schnet import build_model
from ..models.topology import ModelTopology, model_topology

__all__ = [
    "TrainingConfig",
    "ForceData",
    "load_force_data",
    "time_block_split",
    "force_loss",
    "accumulate_force_loss",
    "pass_chunks",
    "evaluate",
    "ForceMatchingTrainer",
    "PairCache",
    "TrainingResult",
    "train_force_matching",
]

logger = logging.getLogger(__name__)


#: Default largest number of neighbour pairs evaluated in one vectorised pass (see ``TrainingConfig``).
PASS_PAIRS = 20_000
#: Cached pair lists reach this far (nm) beyond the model's cutoff.
PAIR_MARGIN = 0.01


class TrainingConfig(StrictModel):
    """Optimisation settings (plain numbers: epochs, counts, rates are unitless).

    ``max_pairs_per_pass``: the frames of a mini-batch are evaluated in vectorised passes of at most
    this many neighbour pairs (at least one frame each), their gradients accumulated, so the result is
    that of one pass over the whole batch.  Small frames are batched (one pass removes the per-call
    overhead that dominates them); large frames are split, because on a CPU a pass whose per-pair
    tensors outgrow the caches runs slower per frame than smaller ones (``benchmarks/bench_neural.py``).

    ``position_noise`` (nm): the standard deviation of Gaussian noise added to the training frames' bead
    positions at every step (never to validation frames).  Training with input noise is a Tikhonov penalty on
    the model's force derivatives, ``sigma^2 * |dF/dx|^2`` to leading order (Bishop 1995): it smooths the
    learned surface where the data are noisy (mapped forces are mostly noise), keeping the model soft enough
    for large MD timesteps.  A few thousandths of a nm barely moves a bond (the 3-bead trimethylpentane
    bond's width is 0.011 nm) but removes the network's sub-0.02 nm wiggles.  0 (the default) turns it off.
    """

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    scheduler_factor: float = 0.5
    scheduler_patience: int = 5
    early_stopping_patience: int = 20
    validation_fraction: float = 0.2
    n_blocks: int = 10
    seed: int = 0
    max_frames: int | None = None
    max_pairs_per_pass: int = Field(default=PASS_PAIRS, gt=0)
    position_noise: Length = "0 nm"
    progress: bool = True

    @field_validator("position_noise")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"position_noise must be >= 0 nm (a standard deviation), got {value} nm")
        return value


@dataclass(frozen=True)
class ForceData:
    """Frames of a CG dataset as tensors: positions/forces (F, N, 3), boxes (F, 3, 3) or None."""

    positions: torch.Tensor
    forces: torch.Tensor
    boxes: torch.Tensor | None
    topology: ModelTopology
    temperature: torch.Tensor | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])


def load_force_data(dataset, *, temperature=None, max_frames: int | None = None, dtype=torch.float32) -> ForceData:
    """Read a coarse-grained dataset (path or :class:`Dataset`) for force matching.

    Raises
    ------
    DatasetError
        Not coarse-grained data, no forces, or NaN/inf in positions or forces (the
        message names the first bad frames).
    """
    ds: Dataset = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    if ds.kind != "coarse-grained":
        raise DatasetError(
            f"{ds.path} holds {ds.kind!r} data; force matching needs a coarse-grained dataset "
            "(map the all-atom data first with openmm_cgml.mapping.map_dataset)"
        )
    if ds.forces is None:
        raise DatasetError(f"{ds.path} stores no forces ({ds.fields}); force matching needs mapped forces")
    n = ds.n_frames if max_frames is None else min(ds.n_frames, int(max_frames))
    if n < 2:
        raise DatasetError(f"{ds.path} has {ds.n_frames} frames; force matching needs at least 2")
    for name, arr in (("forces", ds.forces[:n]), ("positions", ds.positions[:n])):
        bad = ~np.isfinite(arr).all(axis=(1, 2))
        if bad.any():
            frames = np.nonzero(bad)[0]
            raise DatasetError(
                f"{ds.path} has non-finite {name} (NaN or inf) in {len(frames)} frame(s), first {frames[:5].tolist()}; "
                "remove those frames or regenerate the data"
            )
    box = ds.box[:n]
    periodic = bool(np.any(box))
    temp = None
    if temperature is not None:
        temp = torch.as_tensor(np.broadcast_to(np.asarray(temperature, dtype=float), (n,)).copy(), dtype=dtype)
    return ForceData(
        positions=torch.as_tensor(ds.positions[:n], dtype=dtype),
        forces=torch.as_tensor(ds.forces[:n], dtype=dtype),
        boxes=torch.as_tensor(box, dtype=dtype) if periodic else None,
        topology=model_topology(ds),
        temperature=temp,
        source=str(ds.path),
        metadata=dict(ds.metadata),
    )


def time_block_split(n_frames: int, validation_fraction: float = 0.2, n_blocks: int = 10, seed: int = 0):
    """Split frame indices into contiguous time blocks; a seeded choice of blocks is the validation set."""
    if not 0 < validation_fraction < 1:
        raise ConfigurationError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_blocks = max(2, min(int(n_blocks), n_frames))
    blocks = np.array_split(np.arange(n_frames), n_blocks)
    n_val = max(1, int(round(validation_fraction * n_blocks)))
    chosen = set(np.random.default_rng(seed).choice(n_blocks, size=n_val, replace=False).tolist())
    val = np.concatenate([b for k, b in enumerate(blocks) if k in chosen])
    train = np.concatenate([b for k, b in enumerate(blocks) if k not in chosen])
    return train, val


class PairCache:
    """Neighbour pairs of every frame of a dataset, searched once and reused by every epoch.

    The frames' positions never change during training (only the distances computed from
    them need autograd), so the neighbour search is done once per frame, within the
    model's longest cutoff plus a small ``margin`` (the model still masks each block by its
    own cutoff, so the result equals a fresh search).  :meth:`batch` concatenates the pairs
    of a mini-batch with the global indices ``frame_in_batch * n_beads + i`` that
    ``energy_from_pairs`` expects.

    Parameters
    ----------
    data : ForceData
    cutoff : float
        nm; the model's longest cutoff.
    margin : float
        nm added to the cutoff (guards the float32 rounding of pairs at the cutoff).
    brute_force_max : int
        All-pairs search up to this many beads, cell list above.
    """

    def __init__(self, data: ForceData, cutoff: float, margin: float = PAIR_MARGIN, brute_force_max: int = 1000):
        from ..models.neighbors import neighbor_pairs

        self.cutoff = float(cutoff) + float(margin)
        self.n_beads = int(data.positions.shape[1])
        self.pairs: list[torch.Tensor] = []
        self.shifts: list[torch.Tensor] = []
        for f in range(data.n_frames):
            box = None if data.boxes is None else data.boxes[f]
            pairs, shifts = neighbor_pairs(data.positions[f], self.cutoff, box, brute_force_max)
            self.pairs.append(pairs)
            self.shifts.append(shifts)

    def batch(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pairs (2, P), shifts (P, 3))`` of the frames ``index`` stacked in that order."""
        index = [int(f) for f in np.asarray(index).ravel()]
        pairs = torch.cat([self.pairs[f] + k * self.n_beads for k, f in enumerate(index)], 1)
        shifts = torch.cat([self.shifts[f] for f in index], 0)
        return pairs, shifts


def _predict(model, positions, boxes, temperature, create_graph: bool, pairs=None):
    pos = positions.detach().requires_grad_(True)
    if pairs is None:
        energy = model.energy_batch(pos, boxes, temperature)
    else:
        p = pos.to(model.dtype)
        b = None if boxes is None else boxes.to(p.dtype)
        energy = model.energy_from_pairs(p, b, pairs[0], pairs[1], temperature)
    (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
    return energy, -grad


def force_loss(model, data: ForceData, index, *, create_graph: bool = True,
               pair_cache: PairCache | None = None, noise: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared force error (kJ/mol/nm)^2 over the frames ``index``, in one batched pass.

    With a :class:`PairCache` (models with ``energy_from_pairs``) the neighbour search is skipped.
    ``noise`` (nm) adds Gaussian noise of that standard deviation to the positions (drawn from
    ``generator``); see ``TrainingConfig.position_noise``.
    """
    idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
    boxes = None if data.boxes is None else data.boxes[idx]
    temp = None if data.temperature is None else data.temperature[idx]
    pairs = None if pair_cache is None else pair_cache.batch(idx)
    positions = data.positions[idx]
    if noise > 0:
        positions = positions + noise * torch.randn(positions.shape, generator=generator, dtype=positions.dtype)
    _, pred = _predict(model, positions, boxes, temp, create_graph, pairs)
    return ((pred - data.forces[idx].to(pred.dtype)) ** 2).mean()


def pass_chunks(index, pair_cache: PairCache | None, max_pairs: int) -> list[np.ndarray]:
    """Consecutive chunks of the frames ``index`` holding at most ``max_pairs`` cached pairs each (at least
    one frame per chunk); the whole ``index`` without a cache."""
    index = np.asarray(index)
    if pair_cache is None:
        return [index]
    chunks, start, pairs = [], 0, 0
    for k, f in enumerate(index.tolist()):
        n = int(pair_cache.pairs[f].shape[1])
        if k > start and pairs + n > max_pairs:
            chunks.append(index[start:k])
            start, pairs = k, 0
        pairs += n
    chunks.append(index[start:])
    return chunks


def accumulate_force_loss(model, data: ForceData, index, *, pair_cache: PairCache | None = None,
                          max_pairs: int = PASS_PAIRS, noise: float = 0.0,
                          generator: torch.Generator | None = None) -> float:
    """Back-propagate the mean squared force error over ``index`` in passes of at most ``max_pairs`` pairs
    (:func:`pass_chunks`); gradients accumulate into the parameters as from one pass.  Returns the loss.
    ``noise``/``generator``: position noise, as in :func:`force_loss`."""
    total = 0.0
    n = len(np.asarray(index))
    for chunk in pass_chunks(index, pair_cache, max_pairs):
        loss = force_loss(model, data, chunk, pair_cache=pair_cache, noise=noise, generator=generator)
        loss = loss * (len(chunk) / n)
        loss.backward()
        total += float(loss.detach())
    return total


def evaluate(model, data: ForceData, index, batch_size: int = 32,
             pair_cache: PairCache | None = None, max_pairs: int = PASS_PAIRS) -> dict[str, float]:
    """Force MSE, RMSE and RMSE relative to the RMS reference force over ``index``: in passes of
    ``batch_size`` frames, split further (with a pair cache) into passes of at most ``max_pairs`` pairs, as
    in training."""
    index = np.asarray(index)
    sq, count = 0.0, 0
    for start in range(0, len(index), batch_size):
        for chunk in pass_chunks(index[start:start + batch_size], pair_cache, max_pairs):
            loss = force_loss(model, data, chunk, create_graph=False, pair_cache=pair_cache)
            sq += float(loss.detach()) * len(chunk)
            count += len(chunk)
    mse = sq / max(count, 1)
    ref = float((data.forces[torch.as_tensor(index)] ** 2).mean())
    return {"mse": mse, "rmse": mse ** 0.5, "relative_rmse": (mse / ref) ** 0.5 if ref > 0 else float("nan")}


@dataclass
class TrainingResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_validation_mse: float
    model: Any
    stopped_early: bool
    bundle_path: Path | None = None
    baselines: dict[str, float] = field(default_factory=dict)


class ForceMatchingTrainer:
    """Train ``model_config`` on ``data`` with ``config``, checkpointing into ``output_dir``.

    Parameters
    ----------
    model_config : dict
        ``{"name": "schnet", "args": {...}}`` (see :data:`openmm_cgml.models.MODELS`);
        ``type_names`` defaults to the dataset's bead types.
    data : ForceData
    config : TrainingConfig or dict
    output_dir : path
        Receives ``checkpoint.pt``, ``loss_curve.json``, ``loss_curve.csv``, ``loss_curve.png``.
    """

    def __init__(self, model_config: Mapping, data: ForceData, config: TrainingConfig | Mapping | None = None,
                 output_dir=None):
        self.config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_data(dict(config or {}))
        args = dict(model_config.get("args", {}))
        args.setdefault("type_names", list(data.topology.type_names))
        self.model_config = {"name": model_config.get("name", "schnet"), "args": args}
        self.data = data
        self.output_dir = None if output_dir is None else Path(output_dir)
        if data.boxes is not None:
            from ..models.neighbors import check_cutoff

            probe = build_model(self.model_config)
            check_cutoff(probe.cutoff, data.boxes[0].double().numpy())
        self._pair_cache: PairCache | None = None
        self._pair_cache_key: tuple | None = None
        self.train_index, self.val_index = time_block_split(
            data.n_frames, self.config.validation_fraction, self.config.n_blocks, self.config.seed)

    def pair_cache(self, model) -> PairCache | None:
        """The dataset's neighbour pairs for ``model`` (built once per trainer; None for models without
        ``energy_from_pairs``).  The pairs reach ``6 * position_noise`` beyond the default margin, so noisy
        positions keep every pair that comes within the cutoff."""
        if not hasattr(model, "energy_from_pairs"):
            return None
        key = (float(model.cutoff), int(getattr(model, "brute_force_max", 1000)))
        if self._pair_cache is None or self._pair_cache_key != key:
            t0 = time.perf_counter()
            self._pair_cache = PairCache(self.data, key[0], margin=PAIR_MARGIN + 6 * self.config.position_noise,
                                         brute_force_max=key[1])
            self._pair_cache_key = key
            logger.info("neighbour pairs of %d frames cached in %.2f s", self.data.n_frames, time.perf_counter() - t0)
        return self._pair_cache

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.output_dir is None else self.output_dir / "checkpoint.pt"

    def _identity(self) -> dict:
        cfg = self.config.to_data()
        cfg.pop("progress", None)
        cfg.pop("epochs", None)  # a resumed run may be extended
        return {"model": self.model_config, "training": cfg, "n_frames": self.data.n_frames,
                "fingerprint": self.data.topology.fingerprint()}

    def _new_state(self):
        torch.manual_seed(self.config.seed)
        model = build_model(self.model_config, self.data.topology)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        if self.config.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, factor=self.config.scheduler_factor, patience=self.config.scheduler_patience)
        elif self.config.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.config.epochs, 1))
        else:
            sched = None
        return model, opt, sched

    def _save_checkpoint(self, state: dict) -> None:
        if self.checkpoint_path is None:
            return
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def _load_checkpoint(self):
        path = self.checkpoint_path
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for damaged archives
            raise CheckpointError(f"cannot resume from {path}: unreadable or corrupt ({exc})") from exc
        if state.get("identity") != json.loads(json.dumps(self._identity())):
            raise CheckpointError(
                f"cannot resume from {path}: it belongs to a different run (model, training settings or dataset "
                "differ); use a new output directory or start without resume"
            )
        return state

    def train(self, *, resume: bool = False, max_epochs: int | None = None) -> TrainingResult:
        """Run (or resume) training; ``max_epochs`` stops early after that many epochs this call (for tests)."""
        from tqdm.auto import tqdm

        cfg = self.config
        model, opt, sched = self._new_state()
        cache = self.pair_cache(model)
        history: list[dict[str, float]] = []
        best = {"mse": float("inf"), "epoch": -1, "state": None}
        bad_epochs, start_epoch = 0, 0
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            state = self._load_checkpoint()
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state.get("scheduler") is not None:
                sched.load_state_dict(state["scheduler"])
            history = list(state["history"])
            best = {"mse": state["best_mse"], "epoch": state["best_epoch"], "state": state["best_state"]}
            bad_epochs, start_epoch = state["bad_epochs"], state["epoch"]
            logger.info("resumed from %s at epoch %d", self.checkpoint_path, start_epoch)
        stopped_early = bad_epochs >= cfg.early_stopping_patience
        done_this_call = 0
        bar = tqdm(range(start_epoch, cfg.epochs), desc="force matching", unit="epoch", disable=not cfg.progress)
        for epoch in bar:
            if stopped_early or (max_epochs is not None and done_this_call >= max_epochs):
                break
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(self.train_index)
            # position noise drawn from a generator seeded per epoch: a resumed run draws the same noise
            noise_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            total, count = 0.0, 0
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                opt.zero_grad()
                loss = accumulate_force_loss(model, self.data, batch, pair_cache=cache,
                                             max_pairs=cfg.max_pairs_per_pass, noise=cfg.position_noise,
                                             generator=noise_gen)
                opt.step()
                total += loss * len(batch)
                count += len(batch)
            val = evaluate(model, self.data, self.val_index, cfg.batch_size, cache, cfg.max_pairs_per_pass)
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(val["mse"])
            elif sched is not None:
                sched.step()
            row = {"epoch": epoch + 1, "train_mse": total / count, "val_mse": val["mse"],
                   "val_relative_rmse": val["relative_rmse"], "lr": opt.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - t0}
            history.append(row)
            if val["mse"] < best["mse"]:
                best = {"mse": val["mse"], "epoch": epoch + 1,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                bad_epochs = 0
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= cfg.early_stopping_patience
            bar.set_postfix(train=f"{row['train_mse']:.4g}", val=f"{row['val_mse']:.4g}")
            done_this_call += 1
            self._save_checkpoint({
                "identity": self._identity(), "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": None if sched is None else sched.state_dict(),
                "history": history, "best_mse": best["mse"], "best_epoch": best["epoch"],
                "best_state": best["state"], "bad_epochs": bad_epochs,
            })
            if stopped_early:
                logger.info("early stopping at epoch %d (best %d)", epoch + 1, best["epoch"])
        bar.close()
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        model.eval()
        if self.output_dir is not None:
            write_loss_curves(history, self.output_dir)
        return TrainingResult(history, best["epoch"], best["mse"], model, stopped_early)


def write_loss_curves(history: list[dict[str, float]], output_dir) -> None:
    """``loss_curve.json``, ``loss_curve.csv`` and ``loss_curve.png`` in ``output_dir``."""
    output_dir = Path(output_dir)
    atomic_write_text(output_dir / "loss_curve.json", json.dumps({"units": "(kJ/mol/nm)^2", "history": history},
                                                                 indent=1))
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    atomic_write_text(output_dir / "loss_curve.csv", buf.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.semilogy(epochs, [h["train_mse"] for h in history], label="train")
    ax.semilogy(epochs, [h["val_mse"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("force MSE / (kJ/mol/nm)$^2$")
    ax.legend()
    fig.tight_layout()
    with atomic_path(output_dir / "loss_curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def train_force_matching(dataset, model_config: Mapping, config: TrainingConfig | Mapping | None = None, *,
                         output_dir, bundle_path=None, resume: bool = False, temperature=None,
                         prior_only_baseline: bool = True) -> TrainingResult:
    """Train on a CG dataset and write a model bundle (default ``output_dir/model.cgml``).

    With ``prior_only_baseline`` the priors alone are also fitted (same settings, network
    off) and both validation errors are stored in the bundle's training metadata.
    """
    cfg = config if isinstance(config, TrainingConfig) else TrainingConfig.from_data(dict(config or {}))
    data = dataset if isinstance(dataset, ForceData) else load_force_data(
        dataset, temperature=temperature, max_frames=cfg.max_frames)
    output_dir = Path(output_dir)
    trainer = ForceMatchingTrainer(model_config, data, cfg, output_dir)
    result = trainer.train(resume=resume)
    val = evaluate(result.model, data, trainer.val_index, cfg.batch_size, trainer.pair_cache(result.model),
                   cfg.max_pairs_per_pass)
    baselines = {"zero_force_mse": float((data.forces[torch.as_tensor(trainer.val_index)] ** 2).mean())}
    if prior_only_baseline and trainer.model_config["args"].get("priors"):
        base_cfg = {"name": trainer.model_config["name"], "args": dict(trainer.model_config["args"], use_network=False)}
        base = ForceMatchingTrainer(base_cfg, data, cfg, output_dir / "prior_only").train(resume=resume)
        baselines["prior_only_mse"] = evaluate(base.model, data, trainer.val_index, cfg.batch_size)["mse"]
    result.baselines = baselines
    bundle_path = Path(bundle_path) if bundle_path is not None else output_dir / "model.cgml"
    save_bundle(bundle_path, result.model, data.topology, model_name=trainer.model_config["name"], training={
        "dataset": data.source, "n_frames": data.n_frames, "train_frames": len(trainer.train_index),
        "validation_frames": len(trainer.val_index), "config": cfg.to_data(), "best_epoch": result.best_epoch,
        "validation": val, "baselines": baselines, "history": result.history, "stopped_early": result.stopped_early,
        "temperature": None if temperature is None else np.asarray(temperature).tolist(),
    })
    result.bundle_path = bundle_path
    logger.info("validation force RMSE %.4g kJ/mol/nm (relative %.3f); baselines %s", val["rmse"],
                val["relative_rmse"], baselines)
    return result

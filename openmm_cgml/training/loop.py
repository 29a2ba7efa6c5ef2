"""The force-matching training loop: Adam, a learning-rate scheduler, early stopping, checkpoints, loss curves
and the model bundle.

Minimises ``< |F_ref - F_model(x)|^2 >`` over frames of a coarse-grained dataset (the multiscale
coarse-graining / force-matching loss of Izvekov and Voth, J. Chem. Phys. 123, 134105 (2005), as
Ricci et al. and Ruza et al. use it), with

- a train/validation split by contiguous time blocks (neighbouring frames are correlated, so a random
  frame split would leak);
- mini-batches of frames evaluated in one vectorised pass (``energy_batch``, or ``energy_from_pairs``
  with pairs searched once per frame for models that support it);
- Adam, a learning-rate scheduler and early stopping on the validation loss;
- atomic checkpoints every epoch (:mod:`openmm_cgml._checkpoint`); a rerun resumes by default and gives the
  same result as an uninterrupted run (per-epoch shuffles and noise are derived from ``(seed, epoch)``, not
  from a running RNG); resuming, refusing and overwriting follow
  :func:`openmm_cgml._checkpoint.resume_or_start`;
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
from typing import Any

import numpy as np
import torch

from .._checkpoint import identity_hash, json_ready, resume_or_start, write_checkpoint
from .._io import atomic_path, atomic_write_text, package_versions, write_json
from .._safety import load_tensor_payload
from ..analysis.force_noise import force_noise_fraction
from ..analysis.statistics import block_average
from ..exceptions import CheckpointError, CorruptFileError, TrajectoryError
from ..geometry import check_cutoff
from ..models.bundle import save_bundle
from ..models.registry import build_model
from .config import PAIR_MARGIN, TrainingConfig
from .data import ForceData, PairCache, load_force_data, time_block_split
from .losses import accumulate_force_loss, evaluate, frame_errors

__all__ = ["TrainingResult", "ForceMatchingTrainer", "write_loss_curves", "train_force_matching"]

logger = logging.getLogger(__name__)


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
        Receives ``checkpoint.chk``, ``loss_curve.json``, ``loss_curve.csv``, ``loss_curve.png``.
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
            probe = build_model(self.model_config)
            check_cutoff(probe.cutoff, data.boxes.double().numpy(), "the model")
        self._pair_cache: PairCache | None = None
        self._pair_cache_key: tuple | None = None
        self.train_index, self.val_index = time_block_split(
            data.n_frames, self.config.validation_fraction, self.config.n_blocks, self.config.seed,
            segments=data.segments or None)

    def pair_cache(self, model) -> PairCache | None:
        """The dataset's neighbour pairs for ``model`` (built once per trainer; None for models without
        ``supports_pair_cache``).  The pairs reach ``6 * position_noise`` beyond the default margin, so noisy
        positions keep every pair that comes within the cutoff."""
        if not getattr(model, "supports_pair_cache", False):
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
        return None if self.output_dir is None else self.output_dir / "checkpoint.chk"

    def _identity(self) -> dict:
        cfg = self.config.to_data()
        cfg.pop("progress", None)
        cfg.pop("epochs", None)  # a resumed run may be extended
        identity = {"model": self.model_config, "training": cfg, "n_frames": self.data.n_frames,
                    "fingerprint": self.data.topology.fingerprint()}
        if len(self.data.segments) > 1:  # several datasets: which frames of which temperature
            identity["segments"] = list(self.data.segments)
            identity["temperatures_K"] = self.data.temperatures
        return identity

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
        identity = self._identity()
        buf = io.BytesIO()
        torch.save(state, buf)
        header = {"identity": identity_hash(identity), "identity_data": json_ready(identity), "epoch": state["epoch"]}
        write_checkpoint(self.checkpoint_path, header, buf.getvalue())

    def _load_checkpoint(self, *, resume: bool = True, overwrite: bool = False):
        """The checkpoint's state to resume from, or None to start fresh (the policy of
        :func:`~openmm_cgml._checkpoint.resume_or_start`)."""
        path = self.checkpoint_path
        if path is None:
            return None
        found = resume_or_start(path, self._identity(), resume=resume, overwrite=overwrite,
                                what="training run (model, training settings or dataset)")
        if found is None:
            return None
        try:
            return load_tensor_payload(found[1], f"the training checkpoint {path}")
        except CorruptFileError as exc:
            raise CheckpointError(f"cannot resume: {exc}; pass --overwrite (overwrite: true) to start "
                                  "again") from None

    def train(self, *, resume: bool = True, overwrite: bool = False, max_epochs: int | None = None,
              progress: bool | None = None) -> TrainingResult:
        """Run, or resume, training.

        ``resume`` (the default) continues from ``checkpoint.chk`` in the output directory if there is one; it
        must come from the same model, training settings (but ``epochs``, which may grow, and ``progress``) and
        dataset.  ``resume=False`` starts fresh but refuses to replace an existing checkpoint unless
        ``overwrite``; ``overwrite`` starts fresh, replacing it.  ``max_epochs`` stops early after that many
        epochs this call (for tests); ``progress`` shows a progress bar (default: the configuration's
        ``progress``, else none).

        Raises
        ------
        CheckpointError
            If the checkpoint is corrupt or of another run (the message names the settings that differ), or
            exists while ``resume`` is False, and ``overwrite`` is False.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        model, opt, sched = self._new_state()
        cache = self.pair_cache(model)
        history: list[dict[str, float]] = []
        best = {"mse": float("inf"), "epoch": -1, "state": None}
        bad_epochs, start_epoch = 0, 0
        state = self._load_checkpoint(resume=resume, overwrite=overwrite)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state.get("scheduler") is not None:
                sched.load_state_dict(state["scheduler"])
            history = list(state["history"])
            best = {"mse": state["best_mse"], "epoch": state["best_epoch"], "state": state["best_state"]}
            bad_epochs, start_epoch = state["bad_epochs"], state["epoch"]
            logger.info("resumed from epoch %d of %d (checkpoint %s)", start_epoch, cfg.epochs, self.checkpoint_path)
        stopped_early = bad_epochs >= cfg.early_stopping_patience
        done_this_call = 0
        show = progress if progress is not None else bool(cfg.progress)
        bar = tqdm(range(start_epoch, cfg.epochs), desc="force matching", unit="epoch", disable=not show)
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


def prior_margin(model_frames: np.ndarray, prior_frames: np.ndarray, *, n_blocks: int = 10,
                 z: float = 2.0) -> dict[str, float | bool]:
    """Whether a network beats its priors by a meaningful margin: the per-frame validation force MSEs of both
    (frames in time order), their mean difference relative to the priors' MSE and its standard error from
    ``n_blocks`` contiguous blocks (frames are correlated); ``beats_priors`` when the improvement exceeds ``z``
    standard errors."""
    model_frames, prior_frames = np.asarray(model_frames, float), np.asarray(prior_frames, float)
    diff = prior_frames - model_frames
    scale = float(prior_frames.mean())
    mean = float(diff.mean())
    err = block_average(diff, min(n_blocks, diff.size)).error if diff.size >= 2 else float("nan")
    return {"relative_improvement": mean / scale, "relative_improvement_err": err / scale,
            "beats_priors": bool(np.isfinite(err) and mean > z * err), "z": z, "n_frames": int(diff.size)}


def train_force_matching(dataset, model_config: Mapping, config: TrainingConfig | Mapping | None = None, *,
                         output_dir, bundle_path=None, resume: bool = True, overwrite: bool = False,
                         temperature=None, prior_only_baseline: bool = True,
                         progress: bool | None = None) -> TrainingResult:
    """Train on a CG dataset and write a model bundle (default ``output_dir/model.cgml``).

    With ``prior_only_baseline`` the priors alone are also fitted (the registered ``priors`` model, same
    settings; evaluated as they are when none of them is learnable) and both validation errors are stored in
    the bundle's training metadata.  ``resume`` and ``overwrite``: see :meth:`ForceMatchingTrainer.train`
    (both trainings, the model's and the priors', follow them).
    """
    cfg = config if isinstance(config, TrainingConfig) else TrainingConfig.from_data(dict(config or {}))
    data = dataset if isinstance(dataset, ForceData) else load_force_data(
        dataset, temperature=temperature, max_frames=cfg.max_frames)
    output_dir = Path(output_dir)
    trainer = ForceMatchingTrainer(model_config, data, cfg, output_dir)
    result = trainer.train(resume=resume, overwrite=overwrite, progress=progress)
    val = evaluate(result.model, data, trainer.val_index, cfg.batch_size, trainer.pair_cache(result.model),
                   cfg.max_pairs_per_pass)
    baselines = {"zero_force_mse": float((data.forces[torch.as_tensor(trainer.val_index)] ** 2).mean())}
    if prior_only_baseline and trainer.model_config["args"].get("priors"):
        args = trainer.model_config["args"]
        base_cfg = {"name": "priors", "args": {"type_names": args["type_names"], "priors": args["priors"],
                                               "dtype": args.get("dtype", "float32")}}
        base_model = build_model(base_cfg, data.topology)
        if any(p.requires_grad for p in base_model.parameters()):  # learnable priors: fit them alone
            base_model = ForceMatchingTrainer(base_cfg, data, cfg, output_dir / "prior_only").train(
                resume=resume, overwrite=overwrite, progress=False).model
        baselines["prior_only_mse"] = evaluate(base_model, data, trainer.val_index, cfg.batch_size)["mse"]
        baselines["prior_margin"] = prior_margin(
            frame_errors(result.model, data, trainer.val_index, trainer.pair_cache(result.model),
                         cfg.max_pairs_per_pass), frame_errors(base_model, data, trainer.val_index))
        if not baselines["prior_margin"]["beats_priors"]:
            m = baselines["prior_margin"]
            logger.warning("the network does not beat its priors by a meaningful margin: validation force MSE %.5g "
                           "against %.5g for the priors alone (%.2f %% +/- %.2f %% better); its many-body terms add "
                           "little the priors do not already give", val["mse"], baselines["prior_only_mse"],
                           100 * m["relative_improvement"], 100 * m["relative_improvement_err"])
    try:
        baselines["force_noise"] = force_noise_fraction(data.forces.detach().cpu().numpy())
        logger.info("the mapped forces are %.0f %% +/- %.0f %% noise (force_noise_fraction): a fit cannot go below "
                    "that share of their variance", 100 * baselines["force_noise"]["noise_fraction"],
                    100 * baselines["force_noise"]["noise_fraction_err"])
    except TrajectoryError as exc:
        logger.info("no noise fraction of the mapped forces: %s", exc)
    result.baselines = baselines
    bundle_path = Path(bundle_path) if bundle_path is not None else output_dir / "model.cgml"
    save_bundle(bundle_path, result.model, data.topology, model_name=trainer.model_config["name"], training={
        "dataset": data.source, "n_frames": data.n_frames, "train_frames": len(trainer.train_index),
        "validation_frames": len(trainer.val_index), "config": cfg.to_data(), "best_epoch": result.best_epoch,
        "validation": val, "baselines": baselines, "history": result.history, "stopped_early": result.stopped_early,
        "temperature": None if temperature is None else np.asarray(temperature).tolist(),
        "temperatures_K": data.temperatures or None,
        "temperature_range_K": [data.temperatures[0], data.temperatures[-1]] if data.temperatures else None,
    })
    result.bundle_path = bundle_path
    # for readers that should not unpack a bundle (cgml report)
    write_json(json_ready({"bundle": str(bundle_path), "dataset": str(data.source), "validation": val,
                           "baselines": baselines, "best_epoch": result.best_epoch,
                           "stopped_early": result.stopped_early, "package_versions": package_versions()}),
               output_dir / "training_summary.json")
    logger.info("validation force RMSE %.4g kJ/mol/nm (relative %.3f); baselines %s", val["rmse"],
                val["relative_rmse"], baselines)
    return result

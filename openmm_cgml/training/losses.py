"""The force-matching loss, ``< |F_ref - F_model(x)|^2 >``, evaluated in vectorised passes."""

from __future__ import annotations

import numpy as np
import torch

from .config import PASS_PAIRS
from .data import ForceData, PairCache

__all__ = ["force_loss", "pass_chunks", "accumulate_force_loss", "evaluate"]


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


def frame_errors(model, data: ForceData, index, pair_cache: PairCache | None = None,
                 max_pairs: int = PASS_PAIRS) -> np.ndarray:
    """The force MSE of each frame of ``index`` (in its order), one frame per pass."""
    out = []
    for i in np.asarray(index):
        sq, count = 0.0, 0
        for chunk in pass_chunks(np.array([i]), pair_cache, max_pairs):
            sq += float(force_loss(model, data, chunk, create_graph=False, pair_cache=pair_cache).detach()) * len(chunk)
            count += len(chunk)
        out.append(sq / max(count, 1))
    return np.asarray(out)


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

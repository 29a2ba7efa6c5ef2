"""Force-matching settings (the ``training`` section of ``cgml train``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..config import Length, StrictModel

__all__ = ["TrainingConfig", "PASS_PAIRS", "PAIR_MARGIN"]


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

    ``progress``: a progress bar; None (the default) leaves it to the caller (``cgml train`` shows one, the
    library does not).
    """

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    scheduler_factor: float = Field(default=0.5, gt=0, lt=1)
    scheduler_patience: int = Field(default=5, ge=0)
    early_stopping_patience: int = Field(default=20, ge=1)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    n_blocks: int = Field(default=10, ge=1)
    seed: int = Field(default=0, ge=0)
    max_frames: int | None = Field(default=None, ge=2)
    max_pairs_per_pass: int = Field(default=PASS_PAIRS, gt=0)
    position_noise: Length = "0 nm"
    progress: bool | None = None

    @field_validator("position_noise")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"position_noise must be >= 0 nm (a standard deviation), got {value} nm")
        return value

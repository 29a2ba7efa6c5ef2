"""Force-matching training of CG models (torch only; no ``openmm.app``)."""

from .force_matching import (
    ForceData,
    ForceMatchingTrainer,
    PairCache,
    TrainingConfig,
    TrainingResult,
    accumulate_force_loss,
    evaluate,
    force_loss,
    load_force_data,
    pass_chunks,
    time_block_split,
    train_force_matching,
    write_loss_curves,
)
from .priors import boltzmann_priors

__all__ = [
    "boltzmann_priors",
    "ForceData",
    "ForceMatchingTrainer",
    "PairCache",
    "TrainingConfig",
    "TrainingResult",
    "accumulate_force_loss",
    "evaluate",
    "force_loss",
    "load_force_data",
    "pass_chunks",
    "time_block_split",
    "train_force_matching",
    "write_loss_curves",
]

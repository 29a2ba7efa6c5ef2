"""Force-matching training of CG models (torch only; no ``openmm.app``).

Layout: :mod:`.config` (settings), :mod:`.data` (frames, split, pair cache), :mod:`.losses` (the loss),
:mod:`.loop` (the trainer, checkpoints, bundle), :mod:`.priors` (priors estimated from the data).
"""

from .config import PAIR_MARGIN, PASS_PAIRS, TrainingConfig
from .data import ForceData, PairCache, load_force_data, time_block_split
from .loop import ForceMatchingTrainer, TrainingResult, train_force_matching, write_loss_curves
from .losses import accumulate_force_loss, evaluate, force_loss, pass_chunks
from .priors import boltzmann_priors

__all__ = [
    "boltzmann_priors",
    "ForceData",
    "ForceMatchingTrainer",
    "PairCache",
    "PAIR_MARGIN",
    "PASS_PAIRS",
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

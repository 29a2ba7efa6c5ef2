"""``cgml train config.yaml``: fit a neural CG force field to a mapped dataset by force matching
(:func:`openmm_cgml.workflows.run_train`)."""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)


def run(args) -> int:
    from ..config import load_config
    from ..workflows.train import TrainConfig, run_train

    config = load_config(args.config, TrainConfig)
    if args.overwrite:
        config = config.model_copy(update={"overwrite": True})
    result = run_train(config, progress=True)
    last = result.history[-1] if result.history else {}
    logger.info("best epoch %d, validation force MSE %.4g (kJ/mol/nm)^2", result.best_epoch,
                result.best_validation_mse)
    print(f"wrote {result.bundle_path} (best epoch {result.best_epoch}, validation force RMSE "
          f"{math.sqrt(result.best_validation_mse):.4g} kJ/mol/nm, {len(result.history)} epochs, "
          f"last lr {last.get('lr', float('nan')):.3g})")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import train as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "train", "train a neural CG force field by force matching", workflow, run, overwrite="start again, replacing the output directory's checkpoint (overwrite: true)")

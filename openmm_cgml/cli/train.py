"""``cgml train config.yaml``: fit a neural CG force field to a mapped dataset by force matching
(:func:`openmm_cgml.workflows.run_train`)."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

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

    parser = subparsers.add_parser("train", help="train a neural CG force field by force matching",
                                   description=workflow.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML configuration (see the description)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again, replacing the output directory's checkpoint (overwrite: true)")
    parser.set_defaults(func=run)

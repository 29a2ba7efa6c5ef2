"""``cgml compare config.yaml``: compare a CG run with its AA (or mapped-AA) reference
(:func:`openmm_cgml.workflows.run_compare`; relative paths are relative to the configuration file)."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args) -> int:
    from ..config import load_config
    from ..workflows.compare import CompareConfig, run_compare

    result = run_compare(load_config(args.config, CompareConfig), base_dir=Path(args.config).resolve().parent)
    print(result.table.to_markdown())
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import compare as workflow

    parser = subparsers.add_parser("compare", help="compare a CG run with its all-atom reference (table + figures)",
                                   description=workflow.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML configuration (keys below)")
    parser.set_defaults(func=run)

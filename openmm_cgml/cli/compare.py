"""``cgml compare config.yaml``: compare a CG run with its AA (or mapped-AA) reference
(:func:`openmm_cgml.workflows.run_compare`; relative paths are relative to the configuration file)."""

from __future__ import annotations

from pathlib import Path


def run(args) -> int:
    from ..config import load_config
    from ..workflows.compare import CompareConfig, run_compare

    result = run_compare(load_config(args.config, CompareConfig), base_dir=Path(args.config).resolve().parent)
    print(result.table.to_markdown())
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import compare as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "compare", "compare a CG run with its all-atom reference (table + figures)", workflow, run)

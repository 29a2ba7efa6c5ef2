"""``cgml map CONFIG.yaml``: map an all-atom dataset to a coarse-grained dataset (:func:`openmm_cgml.workflows.run_map`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..workflows.map import MapConfig, run_map

    result = run_map(load_config(args.config, MapConfig), progress=True)
    print(f"{result.mapping!r}\nwrote {result.output}")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import map as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "map", "map an all-atom dataset to coarse-grained beads", workflow, run)

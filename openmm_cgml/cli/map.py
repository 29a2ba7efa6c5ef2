"""``cgml map CONFIG.yaml``: map an all-atom dataset to a coarse-grained dataset (:func:`openmm_cgml.workflows.run_map`)."""

from __future__ import annotations

import argparse


def run(args) -> int:
    from ..config import load_config
    from ..workflows.map import MapConfig, run_map

    result = run_map(load_config(args.config, MapConfig), progress=True)
    print(f"{result.mapping!r}\nwrote {result.output}")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import map as workflow

    p = subparsers.add_parser("map", help="map an all-atom dataset to coarse-grained beads",
                              description=workflow.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML configuration (keys below)")
    p.set_defaults(func=run)

"""``cgml run config.yaml``: run a CG System (from ``cgml build``) and record a dataset for ``cgml compare``
(:func:`openmm_cgml.workflows.run_cg`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args) -> int:
    from ..config import load_config
    from ..workflows.run import RunConfig, run_cg

    result = run_cg(load_config(args.config, RunConfig), overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {result.dataset} ({result.n_frames} frames of {result.topology.n_beads} beads, types "
          f"{', '.join(result.topology.type_names)}; {result.ns_per_day:.4g} ns/day)")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import run as workflow

    parser = subparsers.add_parser("run", help="run a CG System (XML + PDB from cgml build) and record a dataset",
                                   description=workflow.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML configuration (keys below)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)

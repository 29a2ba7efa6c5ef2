"""``cgml run config.yaml``: run a CG System (from ``cgml build``) and record a dataset for ``cgml compare``
(:func:`openmm_cgml.workflows.run_cg`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..workflows.run import RunConfig, run_cg

    result = run_cg(load_config(args.config, RunConfig), overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {result.dataset} ({result.n_frames} frames of {result.topology.n_beads} beads, types "
          f"{', '.join(result.topology.type_names)}; {result.ns_per_day:.4g} ns/day)")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import run as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "run", "run a CG System (XML + PDB from cgml build) and record a dataset", workflow, run, overwrite="replace an existing output dataset", quiet=True)

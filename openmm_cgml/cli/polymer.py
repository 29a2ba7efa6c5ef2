"""``cgml polymer config.yaml``: a polymer melt end to end, from the AA oligomer melt to IBI and neural CG models
and their transfer to longer chains (:func:`openmm_cgml.workflows.polymer.run_polymer`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..workflows.polymer import PolymerConfig, run_polymer

    cfg = load_config(args.config, PolymerConfig)
    if args.overwrite:
        cfg = cfg.model_copy(update={"overwrite": True})
    summary = run_polymer(cfg, progress=not args.quiet)
    print(f"summary: {cfg.output.resolve() / 'summary.md'}; chain scaling: {summary['scaling_plot']}")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import polymer as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "polymer", "a polymer melt: AA oligomers, repeat-unit mapping, IBI and neural CG "
                       "models, transfer to longer chains", workflow, run,
                       overwrite="redo every step (default: resume)", quiet=True)

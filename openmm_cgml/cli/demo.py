"""``cgml demo``: the whole workflow on a small built-in system (:func:`openmm_cgml.workflows.run_demo`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from ..workflows import demo as workflow

    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo on liquid 2,3,4-trimethylpentane: AA reference -> mapping -> IBI -> CG run -> validation",
        description=workflow.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", default="demo-output", help="directory for all results (default: demo-output)")
    p.add_argument("--molecules", type=int, default=64, help="number of molecules (default 64)")
    p.add_argument("--beads", type=int, default=3, help="beads per molecule (default 3)")
    p.add_argument("--quick", action="store_true", help="much shorter runs (a smoke test, not converged)")
    p.add_argument("--overwrite", action="store_true", help="redo every step instead of resuming")
    p.add_argument("--platform", default="auto", help="OpenMM platform (default: fastest available)")
    p.add_argument("--no-neural", action="store_true", help="skip step 6, the neural CG force field")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..workflows.demo import DemoConfig, run_demo, summary_markdown

    config = DemoConfig(output=args.output, molecules=args.molecules, beads=args.beads, quick=args.quick,
                        overwrite=args.overwrite, platform=args.platform, neural=not args.no_neural)
    print(summary_markdown(run_demo(config, progress=True)))
    return 0

"""``cgml demo [config.yaml]``: the whole workflow on a small built-in system (:func:`openmm_cgml.workflows.run_demo`).

Its settings come from the optional YAML file (:class:`~openmm_cgml.workflows.DemoConfig`), then from the
options, which override the file."""

from __future__ import annotations

import argparse

from ._help import config_help

#: What each setting does: the options' help and the YAML keys' descriptions.
SETTINGS = {
    "output": "directory for all results",
    "molecules": "number of molecules",
    "beads": "beads per molecule",
    "quick": "much shorter runs (a smoke test, not converged)",
    "overwrite": "redo every step instead of resuming",
    "platform": "OpenMM platform of the AA run: auto (the fastest available; OpenCL only on a GPU) or a name; the CG steps run on the CPU "
                "unless one is named",
    "neural": "step 6, the neural CG force field (--no-neural skips it)",
}


def add_parser(subparsers) -> None:
    from ..workflows import demo as workflow

    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo on liquid 2,3,4-trimethylpentane: AA reference -> mapping -> IBI -> CG run -> validation",
        description=workflow.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=config_help("demo", descriptions=SETTINGS),
    )
    p.add_argument("config", nargs="?", help="optional YAML file with the settings (keys below)")
    p.add_argument("-o", "--output", help=f"{SETTINGS['output']} (default: demo-output)")
    p.add_argument("--molecules", type=int, help=f"{SETTINGS['molecules']} (default 64)")
    p.add_argument("--beads", type=int, help=f"{SETTINGS['beads']} (default 3)")
    p.add_argument("--quick", action="store_const", const=True, help=SETTINGS["quick"])
    p.add_argument("--overwrite", action="store_const", const=True, help=SETTINGS["overwrite"])
    p.add_argument("--platform", help="OpenMM platform (default: fastest available)")
    p.add_argument("--no-neural", dest="neural", action="store_const", const=False,
                   help="skip step 6, the neural CG force field")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..workflows.demo import DemoConfig, run_demo, summary_markdown

    data = load_config(args.config, DemoConfig).to_data() if args.config else {}
    data.update({key: getattr(args, key) for key in DemoConfig.model_fields if getattr(args, key, None) is not None})
    print(summary_markdown(run_demo(DemoConfig.from_data(data), progress=True)))
    return 0

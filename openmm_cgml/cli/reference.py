"""``cgml reference``: build and simulate an all-atom reference liquid, recording a dataset."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "reference",
        help="build an AA liquid from OpenFF molecules, run it in OpenMM and record positions/forces",
        description="Build an all-atom liquid (SMILES + counts, OpenFF force field), minimise, equilibrate "
        "(NVT then NPT) and record a production run to an HDF5 dataset. Resumes from its checkpoint.",
    )
    p.add_argument("config", help="YAML file with the run's settings (quantities with units, e.g. '300 K')")
    p.add_argument("-o", "--output", required=True, help="dataset file to write (.h5)")
    p.add_argument("--overwrite", action="store_true", help="start afresh, replacing existing output")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="do not resume from a checkpoint (and refuse to replace an existing one unless --overwrite)")
    p.add_argument("--platform", help="OpenMM platform (overrides the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..workflows.reference import ReferenceConfig, run_reference

    config = load_config(args.config, ReferenceConfig)
    if args.platform:
        config = config.model_copy(update={"platform": args.platform})
    result = run_reference(config, args.output, resume=args.resume, overwrite=args.overwrite,
                           progress=not args.quiet)
    summary = {
        "dataset": str(result.dataset),
        "frames": result.n_frames,
        "npt_density_g_cm3": result.npt_density,
        "npt_density_std_g_cm3": result.npt_density_std,
        "ns_per_day": result.ns_per_day,
    }
    print(json.dumps(summary, indent=2))
    return 0

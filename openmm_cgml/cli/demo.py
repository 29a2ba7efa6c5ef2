"""``cgml demo``: the whole workflow on a small built-in system (2,3,4-trimethylpentane)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

#: The built-in demo system: liquid 2,3,4-trimethylpentane (source 003's molecule).
DEMO_SMILES = "CC(C)C(C)C(C)C"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo on liquid 2,3,4-trimethylpentane: AA reference -> CG model -> validation",
        description="Runs the workflow on a small built-in system and writes everything to --output.",
    )
    p.add_argument("-o", "--output", default="demo-output", help="directory for all results (default: demo-output)")
    p.add_argument("--molecules", type=int, default=64, help="number of molecules (default 64)")
    p.add_argument("--quick", action="store_true", help="much shorter runs (a smoke test, not converged)")
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    p.add_argument("--platform", default="auto", help="OpenMM platform (default: fastest available)")
    p.set_defaults(func=run)


def demo_reference_config(molecules: int, quick: bool, platform: str) -> dict:
    """Settings of the demo's AA reference run."""
    return dict(
        components=[dict(smiles=DEMO_SMILES, count=molecules, name="TMP")],
        density="0.70 g/cm**3", temperature="298.15 K", pressure="1 bar", timestep="2 fs",
        nvt="2 ps" if quick else "10 ps", npt="4 ps" if quick else "40 ps",
        production="4 ps" if quick else "40 ps", report_interval="0.1 ps" if quick else "0.2 ps",
        checkpoint_interval="2 ps" if quick else "10 ps", platform=platform,
    )


def run(args) -> int:
    from ..reference import run_reference

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    logger.info("step 1: all-atom reference of %d x %s", args.molecules, DEMO_SMILES)
    ref = run_reference(demo_reference_config(args.molecules, args.quick, args.platform), out / "aa.h5",
                        overwrite=args.overwrite)
    summary["aa_reference"] = {
        "dataset": str(ref.dataset), "frames": ref.n_frames, "density_g_cm3": ref.npt_density,
        "ns_per_day": ref.ns_per_day,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0

"""``cgml import settings.xml --gro conf.gro --top topol.top -o DIR``: a CG system and its IBI from a VOTCA setup
(:func:`openmm_cgml.workflows.votca.import_votca`)."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from ..workflows import votca

    p = subparsers.add_parser("import", help="a CG dataset and a cgml ibi configuration from VOTCA's settings.xml, "
                              "conf.gro, topol.top and *.dist.tgt targets", description=votca.__doc__)
    p.add_argument("settings", type=Path, help="VOTCA's settings.xml (its targets are read from its folder)")
    p.add_argument("--gro", type=Path, required=True, help="the CG structure (.gro)")
    p.add_argument("--top", type=Path, required=True, help="the CG topology (.top, self-contained)")
    p.add_argument("--mdp", type=Path, help="grompp.mdp: its timestep (dt) is carried over")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory (cg.h5, ibi.yaml, import.md)")
    p.add_argument("--production-steps", type=int, default=10000, help="MD steps sampled per IBI iteration")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..workflows.votca import import_votca

    result = import_votca(args.settings, args.gro, args.top, args.output, mdp=args.mdp,
                          production_steps=args.production_steps)
    print(f"wrote {result.dataset}, {result.config} and {result.report} ({len(result.settings)} settings: what each "
          f"became). Next: cgml ibi {result.config}")
    return 0

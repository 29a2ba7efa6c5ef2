"""``cgml build config.yaml``: an OpenMM System (XML), PDB and CG topology (JSON) of a CG system from a trained
model, IBI tables or a force-field file (:func:`openmm_cgml.workflows.run_build`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..workflows.build import BuildConfig, run_build

    cfg = load_config(args.config, BuildConfig)
    built = run_build(cfg)
    print(f"wrote {cfg.system} ({built.system.getNumParticles()} beads, {built.system.getNumForces()} forces), "
          f"{cfg.pdb} and its CG topology {cfg.topology_path()} (bead types "
          f"{', '.join(built.cg_topology.type_names)})")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import build as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "build", "build a CG OpenMM System (XML + PDB) from a model bundle or IBI tables", workflow, run)

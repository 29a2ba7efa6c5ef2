"""``cgml export config.yaml``: a tabulated CG model as complete LAMMPS and GROMACS simulations and VOTCA
potentials (:func:`openmm_cgml.workflows.export.run_export`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..workflows.export import ExportConfig, run_export

    cfg = load_config(args.config, ExportConfig)
    result = run_export(cfg)
    for engine, directory in result.directories.items():
        print(f"{engine}: {directory} ({len(result.files[engine])} files)")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import export as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "export", "a tabulated CG model as LAMMPS and GROMACS simulations and VOTCA "
                       "potentials", workflow, run)

"""``cgml build config.yaml``: an OpenMM System (XML) and PDB of a CG system running a trained model.

Example configuration::

    bundle: model.cgml              # from `cgml train`
    dataset: cg_mapped.h5           # coarse-grained dataset: topology, masses, box, positions
    frame: -1                       # which frame supplies positions and box
    system: cg_system.xml           # output System XML
    pdb: cg.pdb                     # output structure
    backend: torch                  # torch (TorchForce) | python (PythonForce; XML needs a picklable callback)
    priors: openmm                  # openmm | network
    precision: float32              # float32 | float64
    strict_mapping: true
    tabulate: null                  # null (the backend's faster choice) | true | false: filter tables
    neighbor_search: auto           # auto (NNPOps when installed and verified) | torch | nnpops
    use_cuda_graphs: false          # TorchForce on the CUDA platform
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from ..config import StrictModel, load_config

logger = logging.getLogger(__name__)


class BuildConfig(StrictModel):
    """Configuration of ``cgml build``."""

    bundle: Path
    dataset: Path
    system: Path
    pdb: Path
    frame: int = -1
    backend: Literal["torch", "python"] = "torch"
    priors: Literal["openmm", "network"] = "openmm"
    precision: Literal["float32", "float64"] | None = None
    strict_mapping: bool = True
    tabulate: bool | None = None
    neighbor_search: Literal["auto", "torch", "nnpops"] = "auto"
    use_cuda_graphs: bool = False


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("build", help="build a CG OpenMM System (XML + PDB) from a model bundle",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="YAML configuration (see the module documentation)")
    parser.set_defaults(func=run)


def build_system(cfg: BuildConfig):
    """(System, Topology, positions nm) for ``cfg``."""
    import numpy as np
    import openmm

    from ..dataset import open_dataset
    from ..exceptions import DatasetError
    from ..forces.base import CGSystemInfo
    from ..forces.neural import NeuralForceTerm
    from ..models.topology import model_topology

    ds = open_dataset(cfg.dataset)
    if ds.kind != "coarse-grained":
        raise DatasetError(f"{cfg.dataset} holds {ds.kind!r} data; `cgml build` needs a coarse-grained dataset")
    try:
        positions = ds.positions[cfg.frame]
        box = ds.box[cfg.frame]
    except IndexError:
        raise DatasetError(f"{cfg.dataset} has {ds.n_frames} frames; frame {cfg.frame} does not exist") from None
    top = model_topology(ds)
    periodic = bool(np.any(box))
    info = CGSystemInfo(top.bead_types, top.molecule_index, top.bonds, np.asarray(ds.masses, dtype=float),
                        np.asarray(box, dtype=float) if periodic else None, angles=top.angles)
    term = NeuralForceTerm(cfg.bundle, backend=cfg.backend, priors=cfg.priors, dtype=cfg.precision,
                           strict_mapping=cfg.strict_mapping, tabulate=cfg.tabulate,
                           neighbor_search=cfg.neighbor_search, use_cuda_graphs=cfg.use_cuda_graphs)
    system = openmm.System()
    for m in info.masses:
        system.addParticle(float(m))
    if periodic:
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in box))
    for group, force in enumerate(term.create_forces(info)):
        force.setForceGroup(group)
        system.addForce(force)
    topology = ds.topology
    if periodic:
        from openmm import unit

        topology.setPeriodicBoxVectors([openmm.Vec3(*row) for row in box] * unit.nanometer)
    return system, topology, positions


def run(args) -> int:
    from openmm import app, unit

    from .._io import atomic_path
    from ..forces.xml import save_system

    cfg: BuildConfig = load_config(args.config, BuildConfig)
    system, topology, positions = build_system(cfg)
    save_system(system, cfg.system)  # read it back with openmm_cgml.forces.xml.load_system
    with atomic_path(cfg.pdb) as tmp, open(tmp, "w") as fh:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, fh)
    print(f"wrote {cfg.system} ({system.getNumParticles()} beads, {system.getNumForces()} forces) and {cfg.pdb}")
    return 0

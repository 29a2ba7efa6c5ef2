"""``cgml build config.yaml``: an OpenMM System (XML) and PDB of a CG system running a trained model or IBI tables.

Example configuration::

    bundle: model.cgml              # from `cgml train` -- or, instead of a bundle:
    # ibi: ibi/                     # the output directory of `cgml ibi` (pair_tables.json, bonded_terms.json);
    #                               # the dataset must then carry its mapping (a `cgml map` output)
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

from pydantic import model_validator

from ..config import StrictModel, load_config

logger = logging.getLogger(__name__)


class BuildConfig(StrictModel):
    """Configuration of ``cgml build``."""

    bundle: Path | None = None
    ibi: Path | None = None
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

    @model_validator(mode="after")
    def _one_model(self):
        if (self.bundle is None) == (self.ibi is None):
            raise ValueError("give exactly one of 'bundle' (a trained model, from cgml train) and 'ibi' (an IBI "
                             "output directory, from cgml ibi)")
        return self


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
    if cfg.ibi is not None:
        return _build_ibi(cfg, ds, positions, box)
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


def read_bonded_terms(path) -> list:
    """The bonded terms of an IBI output's ``bonded_terms.json`` (as held fixed, or as refined)."""
    import json

    from ..exceptions import CorruptFileError
    from ..forces.bonded import bonded_term_from_data

    try:
        data = json.loads(Path(path).read_text())
        return [bonded_term_from_data(d) for d in data["terms"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"cannot read bonded terms from {path}: {exc!r}") from exc


def _build_ibi(cfg: BuildConfig, ds, positions, box):
    """(System, Topology, positions) from an IBI output directory and the dataset's mapping."""
    import numpy as np

    from ..builder import CGSystemBuilder
    from ..exceptions import ConfigurationError
    from ..ibi import cg_system_from_dataset, read_openmm_tables

    mapping, info, _ = cg_system_from_dataset(ds, cfg.frame)
    tables, bonded_path = cfg.ibi / "pair_tables.json", cfg.ibi / "bonded_terms.json"
    if not tables.exists():
        raise ConfigurationError(f"{cfg.ibi} holds no pair_tables.json: is it the output_dir of a cgml ibi run?")
    bonded = read_bonded_terms(bonded_path) if bonded_path.exists() else []
    if not bonded and len(info.bonds):
        raise ConfigurationError(f"{cfg.ibi} holds no bonded_terms.json, but the mapping has {len(info.bonds)} bonds: "
                                 "rerun cgml ibi (with bonded: harmonic or table) to write them")
    builder = CGSystemBuilder(mapping, [read_openmm_tables(tables), *bonded])
    periodic = bool(np.any(box))
    system = builder.createSystem(boxVectors=box if periodic else None)
    topology = builder.createTopology(box if periodic else None)
    return system, topology, np.asarray(positions, dtype=float)


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

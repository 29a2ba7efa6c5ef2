"""Build an OpenMM System (XML) and PDB of a CG system from a trained model or IBI tables: ``cgml build``.

Example configuration::

    bundle: model.cgml              # from `cgml train` -- or, instead of a bundle:
    # ibi: ibi/                     # the output directory of `cgml ibi` (pair_tables.json, bonded_terms.json)
    # force_field: ff.json          # or a force-field file written by CGPotential.save
    dataset: cg_mapped.h5           # coarse-grained dataset: its CG topology, masses, box and positions
    frame: -1                       # which frame supplies positions and box
    system: cg_system.xml           # output System XML
    pdb: cg.pdb                     # output structure
    backend: torch                  # bundles: torch (TorchForce) | python (PythonForce; XML needs a picklable
                                    # callback)
    priors: openmm                  # openmm | network
    precision: float32              # float32 | float64
    strict_mapping: true
    tabulate: null                  # null (the backend's faster choice) | true | false: filter tables
    neighbor_search: auto           # auto (NNPOps when installed and verified) | torch | nnpops
    use_cuda_graphs: false          # TorchForce on the CUDA platform

Whatever the source, the System comes from :class:`openmm_cgml.potential.CGPotential`, exactly as from
Python: ``CGPotential(source, **options).createSystem(CGTopology.from_dataset(dataset, frame))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import model_validator

from ..config import StrictModel

__all__ = ["BuildConfig", "BuildResult", "build_system", "run_build"]


class BuildConfig(StrictModel):
    """Configuration of ``cgml build`` (:func:`build_system`, :func:`run_build`)."""

    bundle: Path | None = None
    ibi: Path | None = None
    force_field: Path | None = None
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
        if sum(x is not None for x in (self.bundle, self.ibi, self.force_field)) != 1:
            raise ValueError("give exactly one of 'bundle' (a trained model, from cgml train), 'ibi' (an IBI output "
                             "directory, from cgml ibi) and 'force_field' (a force-field JSON file)")
        return self

    def source(self) -> Path:
        """The force field's source (bundle, IBI directory or force-field file)."""
        return next(x for x in (self.bundle, self.ibi, self.force_field) if x is not None)

    def potential_options(self) -> dict:
        """The :class:`~openmm_cgml.forces.neural.NeuralForceTerm` options (bundles only)."""
        if self.bundle is None:
            return {}
        return {"backend": self.backend, "priors": self.priors, "dtype": self.precision,
                "strict_mapping": self.strict_mapping, "tabulate": self.tabulate,
                "neighbor_search": self.neighbor_search, "use_cuda_graphs": self.use_cuda_graphs}


@dataclass(frozen=True)
class BuildResult:
    """The built System, its CG topology (with the frame's box), the OpenMM topology and positions (nm)."""

    system: object
    cg_topology: object
    topology: object
    positions: np.ndarray


def build_system(config: BuildConfig) -> BuildResult:
    """The System of ``config``'s force field for its dataset's CG topology and frame."""
    from ..dataset import open_dataset
    from ..exceptions import DatasetError
    from ..potential import CGPotential
    from ..topology import CGTopology

    cfg = config if isinstance(config, BuildConfig) else BuildConfig.from_data(dict(config))
    ds = open_dataset(cfg.dataset)
    if ds.kind != "coarse-grained":
        raise DatasetError(f"{cfg.dataset} holds {ds.kind!r} data; `cgml build` needs a coarse-grained dataset")
    if not -ds.n_frames <= cfg.frame < ds.n_frames:
        raise DatasetError(f"{cfg.dataset} has {ds.n_frames} frames; frame {cfg.frame} does not exist")
    potential = CGPotential(cfg.source(), **cfg.potential_options())
    topology = CGTopology.from_dataset(ds, cfg.frame)
    system = potential.createSystem(topology)
    return BuildResult(system, topology, topology.to_openmm(), np.asarray(ds.positions[cfg.frame], dtype=float))


def run_build(config: BuildConfig) -> BuildResult:
    """:func:`build_system`, then write the System XML (:func:`~openmm_cgml.forces.xml.save_system`) and the PDB."""
    from openmm import app, unit

    from .._io import atomic_path
    from ..forces.xml import save_system

    cfg = config if isinstance(config, BuildConfig) else BuildConfig.from_data(dict(config))
    built = build_system(cfg)
    save_system(built.system, cfg.system)
    with atomic_path(cfg.pdb) as tmp, open(tmp, "w") as fh:
        app.PDBFile.writeFile(built.topology, built.positions * unit.nanometer, fh)
    return built

"""Build an OpenMM System (XML) and PDB of a CG system from a trained model or IBI tables: ``cgml build``.

Example configuration::

    bundle: model.cgml              # from `cgml train` -- or, instead of a bundle:
    # ibi: ibi/                     # the output directory of `cgml ibi` (pair_tables.json, bonded_terms.json)
    # force_field: ff.json          # or a force-field file written by CGPotential.save
    dataset: cg_mapped.h5           # coarse-grained dataset: its CG topology, masses, box and positions
    frame: -1                       # which frame supplies positions and box
    system: cg_system.xml           # output System XML
    pdb: cg.pdb                     # output structure (bead names as atom names, molecules as residues)
    # topology: cg.topology.json    # output CG topology JSON (bead types, molecules, bonds, masses, box);
                                    # default: beside the PDB, <pdb stem>.topology.json
    backend: auto                   # bundles: auto (compiled on a CPU-only machine, else torch) | compiled
                                    # (the C++ network; XML of numbers) | torch (TorchForce) | python
                                    # (PythonForce: its XML holds a pickle and loads only when trusted, e.g.
                                    # cgml run's trust_system)
    priors: openmm                  # openmm | network
    precision: float32              # float32 | float64
    strict_mapping: true
    tabulate: null                  # null (the backend's faster choice) | true | false: filter tables
    neighbor_search: auto           # auto (NNPOps when installed and verified) | torch | nnpops
    use_cuda_graphs: false          # TorchForce on the CUDA platform

Whatever the source, the System comes from :class:`openmm_cgml.potential.CGPotential`, exactly as from
Python: ``CGPotential(source, **options).createSystem(CGTopology.from_dataset(dataset, frame))``.  The PDB
holds bead names, which need not be the bead types (the two ends of a molecule are ``A1`` and ``A2`` of type
``TMP_A``); the CG topology JSON beside it (:meth:`~openmm_cgml.topology.CGTopology.to_json`) keeps the types,
and ``cgml run`` reads it with the PDB, so the run's dataset, and ``cgml compare``, know them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import StrictModel, Temperature

__all__ = ["BuildConfig", "BuildResult", "build_system", "run_build", "default_topology_path"]


def default_topology_path(pdb) -> Path:
    """Where ``cgml build`` writes the CG topology JSON of the PDB ``pdb`` (and ``cgml run`` looks for it):
    beside it, ``<pdb stem>.topology.json``."""
    pdb = Path(pdb)
    return pdb.with_name(f"{pdb.stem}.topology.json")


class BuildConfig(StrictModel):
    """Configuration of ``cgml build`` (:func:`build_system`, :func:`run_build`)."""

    bundle: Path | None = Field(None, description="a trained model bundle (from `cgml train`); give one of bundle, "
                                                  "ibi and force_field")
    ibi: Path | None = Field(None, description="an IBI output directory (from `cgml ibi`: pair_tables.json, "
                                               "bonded_terms.json)")
    force_field: Path | None = Field(None, description="a force-field JSON file (CGPotential.save)")
    dataset: Path = Field(description="coarse-grained dataset: its CG topology, masses, box and positions")
    system: Path = Field(description="output: the System XML")
    pdb: Path = Field(description="output: the structure of the frame (bead names as atom names)")
    topology: Path | None = Field(None, description="output: the CG topology JSON with the bead types (what "
                                                    "`cgml run` reads with the PDB); default: <pdb "
                                                    "stem>.topology.json beside the PDB")
    frame: int = Field(-1, description="which frame of the dataset supplies positions and box (negative: from the "
                                       "end)")
    backend: Literal["auto", "compiled", "torch", "python"] = Field(
        "auto", description="bundles: auto (the compiled C++ network on a machine without a GPU platform, else "
                            "torch) | compiled | torch (TorchForce) | python (PythonForce: its XML holds a pickle "
                            "and loads only when trusted)")
    priors: Literal["openmm", "network"] = Field("openmm", description="bundles: where the priors are evaluated, "
                                                                       "as OpenMM forces or inside the network")
    precision: Literal["float32", "float64"] | None = Field(None, description="bundles: the network's precision "
                                                                              "(null: the bundle's)")
    strict_mapping: bool = Field(True, description="bundles: refuse a topology whose mapping fingerprint differs "
                                                   "from the bundle's")
    tabulate: bool | None = Field(None, description="bundles: the filter networks as tables (null: "
                                                   "the backend's faster choice)")
    neighbor_search: Literal["auto", "torch", "nnpops"] = Field("auto", description="bundles: auto (NNPOps when "
                                                                                    "installed and verified) | torch "
                                                                                    "| nnpops")
    use_cuda_graphs: bool = Field(False, description="bundles: CUDA graphs for the TorchForce on the CUDA platform")
    temperature: Temperature | None = Field(None, description="bundles: the temperature the System will run at (a "
                                                              "temperature-conditioned model is evaluated at it; "
                                                              "outside the trained range a warning)")

    @model_validator(mode="after")
    def _one_model(self):
        if sum(x is not None for x in (self.bundle, self.ibi, self.force_field)) != 1:
            raise ValueError("give exactly one of 'bundle' (a trained model, from cgml train), 'ibi' (an IBI output "
                             "directory, from cgml ibi) and 'force_field' (a force-field JSON file)")
        return self

    def source(self) -> Path:
        """The force field's source (bundle, IBI directory or force-field file)."""
        return next(x for x in (self.bundle, self.ibi, self.force_field) if x is not None)

    def topology_path(self) -> Path:
        """Where the CG topology JSON goes: ``topology``, or :func:`default_topology_path` of the PDB."""
        return self.topology if self.topology is not None else default_topology_path(self.pdb)

    def potential_options(self) -> dict:
        """The :class:`~openmm_cgml.forces.neural.NeuralForceTerm` options (bundles only)."""
        if self.bundle is None:
            return {}
        return {"backend": self.backend, "priors": self.priors, "dtype": self.precision,
                "strict_mapping": self.strict_mapping, "tabulate": self.tabulate,
                "neighbor_search": self.neighbor_search, "use_cuda_graphs": self.use_cuda_graphs,
                "temperature": self.temperature}


@dataclass(frozen=True)
class BuildResult:
    """The built System, its CG topology (with the frame's box), the OpenMM topology and positions (nm)."""

    system: object
    cg_topology: object
    topology: object
    positions: np.ndarray


def build_system(config: BuildConfig) -> BuildResult:
    """The System of ``config``'s force field for its dataset's CG topology and frame."""
    from ..potential import CGPotential

    cfg = config if isinstance(config, BuildConfig) else BuildConfig.from_data(dict(config))
    _, topology, positions = cg_frame(cfg.dataset, cfg.frame, "cgml build")
    potential = CGPotential(cfg.source(), **cfg.potential_options())
    system = potential.createSystem(topology)
    return BuildResult(system, topology, topology.to_openmm(), positions)


def cg_frame(dataset, frame: int, command: str):
    """(dataset, CG topology with the frame's box, positions in nm) of frame ``frame`` of a coarse-grained
    dataset, refusing an all-atom dataset or a frame it does not have (``command`` names the caller)."""
    from ..dataset import open_dataset
    from ..exceptions import DatasetError
    from ..topology import CGTopology

    ds = open_dataset(dataset)
    if ds.kind != "coarse-grained":
        raise DatasetError(f"{dataset} holds {ds.kind!r} data; `{command}` needs a coarse-grained dataset")
    if not -ds.n_frames <= frame < ds.n_frames:
        raise DatasetError(f"{dataset} has {ds.n_frames} frames; frame {frame} does not exist")
    return ds, CGTopology.from_dataset(ds, frame), np.asarray(ds.positions[frame], dtype=float)


def run_build(config: BuildConfig) -> BuildResult:
    """:func:`build_system`, then write the System XML (:func:`~openmm_cgml.forces.xml.save_system`), the PDB and
    the CG topology JSON (:meth:`BuildConfig.topology_path`), each atomically."""
    from openmm import app, unit

    from .._io import atomic_path
    from ..forces.xml import save_system

    cfg = config if isinstance(config, BuildConfig) else BuildConfig.from_data(dict(config))
    built = build_system(cfg)
    save_system(built.system, cfg.system)
    with atomic_path(cfg.pdb) as tmp, open(tmp, "w") as fh:
        app.PDBFile.writeFile(built.topology, built.positions * unit.nanometer, fh)
    built.cg_topology.to_json(cfg.topology_path())
    return built

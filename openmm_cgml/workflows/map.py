"""Map an all-atom dataset to a coarse-grained one: the ``cgml map`` workflow.

Example configuration::

    input: aa.h5
    output: cg.h5
    mapping_out: mapping.json          # optional: the mapping as JSON
    chunk_frames: 64
    mapping:
      method: automatic                # any registered mapping method: automatic | groups | smarts | file |
                                       # learned | a plug-in's
      n_beads: 3                       # automatic: int, or {residue name: int}
      # groups: [[0, 1, 2], [3, 4]]    # groups: local atom indices per bead (or {residue: [...]})
      # smarts: {END: "[CH3][CH]([CH3])", MID: "[CH][CH3]"}
      # smiles: ["CC(C)C(C)C(C)C"]     # smarts: one molecule per molecule type
      # file: mapping.json             # file: a mapping written earlier
      # learned: the CG auto-encoder on the input's frames, with n_beads and
      # options: {force_weight: 0.0, epochs: 400, restarts: 3, max_frames: 200, seed: 0}
      weights: com                     # com | centroid
      molecules: bonds                 # bonds | residues
    force_map: sum                     # sum (each bead's atomic forces) | optimal (the least-noise valid map,
                                       # fitted on force_map_frames frames: less noisy force-matching targets)
    force_map_frames: 200
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel
from ..exceptions import ConfigurationError

__all__ = ["MappingSpec", "MapConfig", "MapResult", "build_mapping", "run_map"]

logger = logging.getLogger(__name__)


class MappingSpec(StrictModel):
    """``method`` names a registered mapping method (:data:`openmm_cgml.mapping.MAPPINGS`); ``options`` go to
    methods added by plug-ins, the other keys to the built-in ones."""

    method: str
    n_beads: int | dict[str, int] | None = None
    groups: list[list[int]] | dict[str, list[list[int]]] | None = None
    smarts: dict[str, str] | None = None
    smiles: list[str] | None = None
    file: str | None = None
    weights: Literal["com", "centroid"] = "com"
    molecules: Literal["bonds", "residues"] = "bonds"
    bead_types: list[str] | dict[str, list[str]] | None = None
    options: dict = {}


class MapConfig(StrictModel):
    """Configuration of ``cgml map`` (:func:`run_map`)."""

    input: str
    output: str
    mapping: MappingSpec
    mapping_out: str | None = None
    chunk_frames: int = Field(64, ge=1)
    precision: Literal["single", "double"] = "single"
    force_map: Literal["sum", "optimal"] = Field("sum", description="sum: each bead's atomic forces; optimal: the "
                                                 "least-noise valid force map over each molecule's atoms "
                                                 "(openmm_cgml.mapping.optimal_force_map), fitted on the input")
    force_map_frames: int = Field(200, ge=2, description="frames (evenly spread) the optimal force map is fitted on")


@dataclass(frozen=True)
class MapResult:
    """What :func:`run_map` made: the mapping and the CG dataset's path."""

    mapping: object
    output: Path


def build_mapping(spec: MappingSpec, topology, masses=None, dataset=None, *, progress: bool = False):
    """A :class:`~openmm_cgml.mapping.CGMapping` for ``topology`` from a :class:`MappingSpec` (through the mapping
    registry); the method's options also carry ``dataset``, the AA dataset's path (methods that learn from data
    read it), and ``progress``."""
    from ..mapping import create_mapping

    options = spec.model_dump(exclude={"method", "options"}, exclude_none=True)
    options.update(spec.options)
    if dataset is not None:
        options.setdefault("dataset", str(dataset))
    options.setdefault("progress", progress)
    return create_mapping(spec.method, topology, options, masses=masses)


def run_map(config: MapConfig, *, progress: bool = False) -> MapResult:
    """Build the mapping of ``config`` for its input dataset, write the mapped dataset (and the mapping JSON)."""
    import numpy as np

    from ..dataset import open_h5, read_array, read_header, stored_fields, topology_from_data
    from ..mapping import map_dataset

    if not isinstance(config, MapConfig):
        config = MapConfig.from_data(dict(config))
    if not Path(config.input).exists():
        raise ConfigurationError(f"input dataset {config.input} does not exist")
    # open_h5 refuses empty, non-HDF5, truncated, damaged and foreign files with a CorruptFileError
    with open_h5(config.input) as f:
        _, _, topology_data, _ = read_header(f)
        topology = topology_from_data(topology_data)
        masses = np.asarray(read_array(f, "masses"))
    mapping = build_mapping(config.mapping, topology, masses, dataset=config.input, progress=progress)
    logger.info("mapping: %r", mapping)
    if config.force_map == "optimal":
        from ..exceptions import DatasetError
        from ..mapping import constraint_pairs_from_metadata, optimal_force_map

        with open_h5(config.input) as f:
            _, meta, topology_data, n = read_header(f)
            if "forces" not in stored_fields(f):
                raise DatasetError(f"force_map: optimal needs the input's forces; {config.input} has none")
            frames = np.unique(np.linspace(0, n - 1, min(n, config.force_map_frames)).round().astype(int))
            forces = np.concatenate([np.asarray(read_array(f, "forces", int(i), int(i) + 1), float) for i in frames])
        constraints = constraint_pairs_from_metadata(meta.get("constraints"), topology_data)
        mapping, report = optimal_force_map(mapping, forces, constraints)
        for bead, r in report.items():
            logger.info("force map of bead %s: %.0f %% of the sum map's force variance", bead,
                        100 * r["variance_ratio"])
    if config.mapping_out:
        mapping.to_json(config.mapping_out)
    map_dataset(config.input, mapping, config.output, chunk_frames=config.chunk_frames, precision=config.precision,
                progress=progress)
    return MapResult(mapping, Path(config.output))

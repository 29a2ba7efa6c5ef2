"""IBI inputs from a coarse-grained dataset (a mapped all-atom run)."""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError, DatasetError
from ._rdf import PairRDFCounter
from ._tables import TargetRDF

__all__ = ["cg_system_from_dataset", "targets_from_dataset"]


def _load(dataset):
    from ..dataset import Dataset, open_dataset

    return dataset if isinstance(dataset, Dataset) else open_dataset(dataset)


def cg_system_from_dataset(dataset, frame: int = -1):
    """The CG system of a mapped dataset: (mapping, CGSystemInfo, positions of ``frame``).

    The dataset's metadata must hold its mapping (as :func:`~openmm_cgml.mapping.map_dataset` writes).
    """
    from ..mapping import CGMapping

    ds = _load(dataset)
    if "mapping" not in ds.metadata:
        raise DatasetError(f"{ds.path} carries no mapping in its metadata; create it with map_dataset")
    mapping = CGMapping.from_data(ds.metadata["mapping"])
    if mapping.n_beads != ds.n_particles:
        raise DatasetError(f"{ds.path}: the mapping has {mapping.n_beads} beads, the dataset {ds.n_particles}")
    box = ds.box[frame]
    return mapping, mapping.system_info(box), np.asarray(ds.positions[frame], dtype=float)


def targets_from_dataset(dataset, cutoff: float, bin_width: float = 0.01, *, stride: int = 1,
                         start: int = 0) -> dict[tuple[str, str], TargetRDF]:
    """Intermolecular target g(r) of every bead-type pair of a mapped dataset (bin centres, nm)."""
    ds = _load(dataset)
    mapping, info, _ = cg_system_from_dataset(ds)
    widths = np.abs(np.diagonal(ds.box, axis1=1, axis2=2)).min()
    if cutoff > 0.5 * widths + 1e-12:
        raise ConfigurationError(f"the RDF range {cutoff} nm exceeds half the smallest box width "
                                 f"({0.5 * widths:.4g} nm) of {ds.path}")
    types = info.type_names
    pairs = [(a, b) for i, a in enumerate(types) for b in types[i:]]
    counter = PairRDFCounter(info.bead_types, info.molecule_index, pairs, cutoff, bin_width)
    frames = range(start, ds.n_frames, max(1, stride))
    if len(frames) == 0:
        raise DatasetError(f"{ds.path} has no frames from {start} on")
    for k in frames:
        counter.add(np.asarray(ds.positions[k], float), ds.box[k])
    return {p: TargetRDF(counter.r, g, source=f"{ds.path}:{p[0]}-{p[1]}") for p, g in counter.rdfs().items()}

"""IBI inputs from a coarse-grained dataset (a mapped all-atom run)."""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError, DatasetError
from ..geometry import check_cutoff
from ..topology import CGTopology
from ._rdf import PairRDFCounter, bonded_exclusions
from ._tables import TargetRDF

__all__ = ["targets_from_dataset"]


def _load(dataset):
    from ..dataset import Dataset, open_dataset

    return dataset if isinstance(dataset, Dataset) else open_dataset(dataset)


def targets_from_dataset(dataset, cutoff: float, bin_width: float = 0.01, *, stride: int = 1,
                         start: int = 0, return_noise: bool = False, exclusions: str = "molecule"):
    """Target g(r) of every bead-type pair of a mapped dataset (bin centres, nm): intermolecular pairs
    (``exclusions="molecule"``), or every pair but the 1-2 and 1-3 pairs along the bonds (``"bonded"``: polymer
    chains, whose beads far apart along the chain interact through the pair potential too).

    The bead types and molecules are the dataset's CG topology (:meth:`CGTopology.from_dataset`).  Returns
    ``{pair: TargetRDF}``; with ``return_noise``, ``(targets, noise)``, where ``noise`` is ``{pair: float}``,
    the sampling noise of each target g(r) (:meth:`PairRDFCounter.noise`: blocks of the dataset's frames), or
    None with fewer than 2 frames.  It is part of IBI's noise floor
    (:class:`~openmm_cgml.ibi.IterativeBoltzmannInversion`'s ``target_noise``).
    """
    ds = _load(dataset)
    topology = CGTopology.from_dataset(ds, frame=None)
    check_cutoff(cutoff, np.asarray(ds.box, dtype=float), f"the RDF range of {ds.path}")
    frames = range(start, ds.n_frames, max(1, stride))
    if len(frames) == 0:
        raise DatasetError(f"{ds.path} has no frames from {start} on")
    if exclusions not in ("molecule", "bonded"):
        raise ConfigurationError(f"exclusions must be 'molecule' or 'bonded', got {exclusions!r}")
    counter = PairRDFCounter(topology.bead_types, topology.molecule_index, topology.type_pairs(), cutoff, bin_width,
                             excluded=bonded_exclusions(topology) if exclusions == "bonded" else None)
    for k in frames:
        counter.add(np.asarray(ds.positions[k], float), ds.box[k])
    targets = {p: TargetRDF(counter.r, g, source=f"{ds.path}:{p[0]}-{p[1]}") for p, g in counter.rdfs().items()}
    return (targets, counter.noise()) if return_noise else targets

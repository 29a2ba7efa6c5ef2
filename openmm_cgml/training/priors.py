"""Classical priors for a neural CG model, estimated from the mapped dataset it will be trained on.

:func:`boltzmann_priors` gives the prior configuration (``[{"name", "args"}]``, MD units) that
Ricci et al. and Ruza et al. put under their networks:

- harmonic bonds and angles from the Boltzmann inversion of the mapped distributions, with the
  Jacobian corrections of the mapping work (:func:`openmm_cgml.ibi.boltzmann_invert`);
- an excluded-volume repulsion ``(sigma_ij / r)^n`` whose sigma per bead-type pair sits just
  below the closest intermolecular contacts seen in the data (a fraction of a low percentile), so
  it only forbids overlaps the AA model never visits; sigma stays learnable during training.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError, DatasetError

__all__ = ["boltzmann_priors"]


def boltzmann_priors(dataset, temperature: float, *, repulsion: bool = True, exponent: int = 12,
                     cutoff: float = 0.8, percentile: float = 0.1, fraction: float = 0.9,
                     max_frames: int = 100) -> list[dict]:
    """Prior configs for the model of ``dataset`` (a mapped CG dataset or its path) at ``temperature`` K.

    Parameters
    ----------
    repulsion : bool
        Include the excluded-volume prior.
    exponent, cutoff : int, float
        Its power ``n`` and cutoff (nm).  12 by default: a softer wall (``n = 6``) can let a network dig a
        "hole" at close contacts it never saw in the data (the measurements are on the documentation's
        results page).
    percentile, fraction : float
        sigma_ij = ``fraction`` x the ``percentile``-th percentile of the intermolecular i-j distances
        below ``cutoff``.
    max_frames : int
        Frames used (evenly spaced over the dataset).
    """
    import torch

    from ..analysis.boltzmann import boltzmann_invert, bonded_samples
    from ..dataset import open_dataset
    from ..geometry import check_cutoff
    from ..models.neighbors import neighbor_pairs
    from ..topology import CGTopology, key_to_str

    if temperature is None or not temperature > 0:
        raise ConfigurationError(f"Boltzmann-inverted priors need the data's temperature in K, got {temperature!r}")
    ds = open_dataset(dataset) if not hasattr(dataset, "positions") else dataset
    if ds.n_frames == 0:
        raise DatasetError(f"{getattr(ds, 'path', 'the dataset')} has no frames to estimate priors from")
    top = CGTopology.from_dataset(ds)
    frames = np.unique(np.linspace(0, ds.n_frames - 1, min(max_frames, ds.n_frames)).round().astype(int))
    pos = np.asarray(ds.positions[frames], dtype=float)
    box = None if top.box_vectors is None else np.asarray(ds.box[frames], dtype=float)
    priors: list[dict] = []
    if repulsion:
        if box is not None:
            check_cutoff(cutoff, box, "the repulsion prior")
        closest: dict[str, list[np.ndarray]] = {}
        types = np.asarray(top.bead_types)
        mol = np.asarray(top.molecule_index)
        for f in range(len(frames)):
            x = torch.as_tensor(pos[f])
            b = None if box is None else torch.as_tensor(box[f])
            pairs, shifts = neighbor_pairs(x, cutoff, b)
            i, j = pairs.numpy()
            d = (x[pairs[1]] - x[pairs[0]] + shifts).norm(dim=-1).numpy()
            inter = mol[i] != mol[j]
            for key in set(zip(types[i[inter]].tolist(), types[j[inter]].tolist())):
                sel = inter & (types[i] == key[0]) & (types[j] == key[1])
                closest.setdefault(key_to_str(key), []).append(d[sel])
        if closest:
            sigma = {key: fraction * float(np.percentile(np.concatenate(v), percentile)) for key, v in closest.items()}
            priors.append({"name": "repulsion", "args": {"sigma": sigma, "exponent": int(exponent),
                                                         "cutoff": float(cutoff)}})
    samples = bonded_samples(pos, top, box=box)
    if samples["bond"]:
        inv = {k: boltzmann_invert(v, "bond", temperature) for k, v in samples["bond"].items()}
        priors.append({"name": "harmonic_bond", "args": {"parameters": {
            key_to_str(k): {"r0": float(r.x0), "k": float(r.k)} for k, r in inv.items()}}})
    if samples["angle"]:
        inv = {k: boltzmann_invert(v, "angle", temperature) for k, v in samples["angle"].items()}
        priors.append({"name": "harmonic_angle", "args": {"parameters": {
            key_to_str(k): {"theta0": float(r.x0), "k": float(r.k)} for k, r in inv.items()}}})
    for p in priors:
        for key, par in p["args"].get("parameters", {}).items():
            if not all(np.isfinite(v) and v > 0 for v in par.values()):
                raise DatasetError(f"the Boltzmann inversion of {p['name']} {key} gave {par}: too few or too narrow "
                                   "samples for a harmonic fit")
    return priors

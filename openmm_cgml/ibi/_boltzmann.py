"""Bonded force terms for a CG system by Boltzmann inversion of its bonded distributions.

The statistics (Jacobian-corrected inversion, kernel density estimates, bonded samples) live in
:mod:`openmm_cgml.analysis.boltzmann`; this module turns them into force terms.
"""

from __future__ import annotations

import numpy as np

from ..analysis.boltzmann import BondedInversion, boltzmann_invert, bonded_samples, kde_potential
from ..exceptions import ConfigurationError
from ..units import KB

__all__ = ["BondedInversion", "boltzmann_invert", "bonded_samples", "kde_potential", "invert_bonded_terms",
           "terms_from_samples", "samples_from_distribution", "KB"]


def invert_bonded_terms(positions, info, temperature: float, *, box=None, harmonic: bool = True,
                        bins: int = 100, dihedrals: bool = False, bandwidth_scale: float = 1.0) -> list:
    """Bonded ForceTerms for a CG system by Boltzmann inversion of its bonded distributions.

    Parameters
    ----------
    positions : array, shape (n_frames, n_beads, 3)
        CG trajectory (nm), e.g. a mapped AA dataset.
    info : CGTopology
        Bead types and bonded tuples.
    temperature : float
        K.
    box : array, shape (n_frames, 3, 3), optional
        For minimum-image bond vectors.
    harmonic : bool
        Harmonic fits (True) or tabulated potentials (False) for bonds and angles.
    dihedrals : bool
        Also add tabulated dihedrals.
    bandwidth_scale : float
        Multiplies Silverman's kernel bandwidth behind the tables (``harmonic=False`` and dihedrals): below 1
        for distributions with several narrow modes, which the rule smooths over.  The tables get stiffer:
        measure the CG timestep again.

    Returns
    -------
    list of ForceTerm (empty when the system has no bonds)
    """

    samples = bonded_samples(positions, info, box=box, dihedrals=dihedrals)
    return terms_from_samples(samples, temperature, harmonic=harmonic, bins=bins, bandwidth_scale=bandwidth_scale)


def terms_from_samples(samples, temperature: float, *, harmonic: bool = True, bins: int = 100,
                       bandwidth_scale: float = 1.0) -> list:
    """The bonded terms of :func:`invert_bonded_terms` from samples of each coordinate (``{"bond": {key: values},
    "angle": ..., "dihedral": ...}``, as :func:`~openmm_cgml.analysis.boltzmann.bonded_samples` returns them, or
    drawn from a target distribution by :func:`samples_from_distribution`)."""
    from ..forces.bonded import HarmonicAngles, HarmonicBonds, TabulatedAngles, TabulatedBonds, TabulatedDihedrals

    terms = []
    inv = {kind: {key: boltzmann_invert(v, kind, temperature, bins=bins, bandwidth_scale=bandwidth_scale)
                  for key, v in g.items()}
           for kind, g in samples.items()}
    if inv.get("bond"):
        terms.append(HarmonicBonds({k: {"r0": r.x0, "k": r.k} for k, r in inv["bond"].items()}) if harmonic
                     else TabulatedBonds({k: r.table() for k, r in inv["bond"].items()}, name="bonds"))
    if inv.get("angle"):
        terms.append(HarmonicAngles({k: {"theta0": r.x0, "k": r.k} for k, r in inv["angle"].items()}) if harmonic
                     else TabulatedAngles({k: r.table() for k, r in inv["angle"].items()}, name="angles"))
    if inv.get("dihedral"):
        terms.append(TabulatedDihedrals({k: r.table() for k, r in inv["dihedral"].items()}, name="dihedrals"))
    return terms


def samples_from_distribution(x, p, n: int = 20000) -> np.ndarray:
    """``n`` deterministic samples (quantiles) of the distribution ``p(x)`` given on a grid (a VOTCA
    ``bond.dist.tgt``: a bond length or angle and its histogram, not divided by the Jacobian), for the bonded
    Boltzmann inversion and refinement that otherwise take a trajectory's values."""
    x = np.asarray(x, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.0, None)
    if x.ndim != 1 or x.shape != p.shape or len(x) < 4 or np.any(np.diff(x) <= 0) or not np.any(p > 0):
        raise ConfigurationError("a bonded target distribution needs increasing x and a non-negative, non-zero p of "
                                 "equal length (at least 4 points)")
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(x))])
    cdf /= cdf[-1]
    keep = np.concatenate([[True], np.diff(cdf) > 0])  # strictly increasing for the inverse
    return np.interp((np.arange(n) + 0.5) / n, cdf[keep], x[keep])

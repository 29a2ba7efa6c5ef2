"""Bonded force terms for a CG system by Boltzmann inversion of its bonded distributions.

The statistics (Jacobian-corrected inversion, kernel density estimates, bonded samples) live in
:mod:`openmm_cgml.analysis.boltzmann`; this module turns them into force terms.
"""

from __future__ import annotations

from ..analysis.boltzmann import BondedInversion, boltzmann_invert, bonded_samples, kde_potential
from ..units import KB

__all__ = ["BondedInversion", "boltzmann_invert", "bonded_samples", "kde_potential", "invert_bonded_terms", "KB"]


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
    from ..forces.bonded import HarmonicAngles, HarmonicBonds, TabulatedAngles, TabulatedBonds, TabulatedDihedrals

    samples = bonded_samples(positions, info, box=box, dihedrals=dihedrals)
    terms = []
    inv = {kind: {key: boltzmann_invert(v, kind, temperature, bins=bins, bandwidth_scale=bandwidth_scale)
                  for key, v in g.items()}
           for kind, g in samples.items()}
    if inv["bond"]:
        terms.append(HarmonicBonds({k: {"r0": r.x0, "k": r.k} for k, r in inv["bond"].items()}) if harmonic
                     else TabulatedBonds({k: r.table() for k, r in inv["bond"].items()}, name="bonds"))
    if inv["angle"]:
        terms.append(HarmonicAngles({k: {"theta0": r.x0, "k": r.k} for k, r in inv["angle"].items()}) if harmonic
                     else TabulatedAngles({k: r.table() for k, r in inv["angle"].items()}, name="angles"))
    if inv["dihedral"]:
        terms.append(TabulatedDihedrals({k: r.table() for k, r in inv["dihedral"].items()}, name="dihedrals"))
    return terms

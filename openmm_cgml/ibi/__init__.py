"""Boltzmann inversion of bonded distributions and iterative Boltzmann inversion (IBI/IMC) in OpenMM.

Layout: :mod:`._algebra` (the potential updates), :mod:`._settings` (the one configuration schema and
the result), :mod:`._loop` (the iterations in OpenMM), :mod:`._outputs` (tables, logs, plots),
:mod:`._bonded_refine` (bonded IBI), :mod:`._tables` (table formats), :mod:`._targets` (targets from a
mapped dataset).
"""

from ..analysis.boltzmann import BondedInversion, boltzmann_invert, bonded_samples, kde_potential
from ..forces.tabulated import read_openmm_tables, write_openmm_tables
from ..units import KB
from ._algebra import extrapolate_core, ibi_update, imc_update, pmf_potential, pressure_correction, rdf_error
from ._boltzmann import invert_bonded_terms, samples_from_distribution, terms_from_samples
from ._loop import IterativeBoltzmannInversion
from ._outputs import plot_convergence, write_outputs
from ._rdf import PairRDFCounter
from ._settings import RENAMED_KEYS, IBIResult, IBISettings
from ._tables import (
    TargetRDF,
    read_votca_distribution,
    validate_grid,
    write_gromacs_table,
    write_votca_distribution,
)
from ._targets import targets_from_dataset

__all__ = [
    "KB",
    "BondedInversion",
    "boltzmann_invert",
    "bonded_samples",
    "kde_potential",
    "invert_bonded_terms",
    "samples_from_distribution",
    "terms_from_samples",
    "IBIResult",
    "IBISettings",
    "RENAMED_KEYS",
    "IterativeBoltzmannInversion",
    "extrapolate_core",
    "ibi_update",
    "imc_update",
    "plot_convergence",
    "write_outputs",
    "pmf_potential",
    "pressure_correction",
    "rdf_error",
    "PairRDFCounter",
    "TargetRDF",
    "read_openmm_tables",
    "read_votca_distribution",
    "validate_grid",
    "write_gromacs_table",
    "write_openmm_tables",
    "write_votca_distribution",
    "targets_from_dataset",
]

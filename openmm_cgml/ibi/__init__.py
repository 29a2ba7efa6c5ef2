"""Boltzmann inversion of bonded distributions and iterative Boltzmann inversion (IBI) in OpenMM."""

from ._boltzmann import KB, BondedInversion, boltzmann_invert, bonded_samples, invert_bonded_terms
from ._ibi import (
    IBIResult,
    IBISettings,
    IterativeBoltzmannInversion,
    extrapolate_core,
    ibi_update,
    imc_update,
    plot_convergence,
    pmf_potential,
    pressure_correction,
    rdf_error,
)
from ._rdf import PairRDFCounter
from ._tables import (
    TargetRDF,
    read_openmm_tables,
    read_votca_distribution,
    validate_grid,
    write_gromacs_table,
    write_lammps_tables,
    write_openmm_tables,
    write_votca_distribution,
)
from ._targets import cg_system_from_dataset, targets_from_dataset

__all__ = [
    "KB",
    "BondedInversion",
    "boltzmann_invert",
    "bonded_samples",
    "invert_bonded_terms",
    "IBIResult",
    "IBISettings",
    "IterativeBoltzmannInversion",
    "extrapolate_core",
    "ibi_update",
    "imc_update",
    "plot_convergence",
    "pmf_potential",
    "pressure_correction",
    "rdf_error",
    "PairRDFCounter",
    "TargetRDF",
    "read_openmm_tables",
    "read_votca_distribution",
    "validate_grid",
    "write_gromacs_table",
    "write_lammps_tables",
    "write_openmm_tables",
    "write_votca_distribution",
    "cg_system_from_dataset",
    "targets_from_dataset",
]

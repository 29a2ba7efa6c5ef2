"""Structure and dynamics analysis on NumPy arrays (no torch, no OpenMM app layer).

Shapes and units follow mdtraj and pymbar: positions and velocities ``(n_frames, n_particles, 3)`` in nm
and nm/ps, boxes ``(n_frames, 3, 3)`` in nm (rows are box vectors), times in ps, energies in kJ/mol,
temperatures in K, masses in Da.  Results are small frozen dataclasses.
"""

from __future__ import annotations

from ._checks import as_boxes, as_times, as_trajectory, check_constant_box_shape, minimum_image
from .arrhenius import GAS_CONSTANT, ArrheniusFit, fit_arrhenius
from .compare import (
    Comparison,
    ComparisonRow,
    TemperatureComparison,
    compare_runs,
    compare_temperatures,
    diffusion_check,
    molecular_diffusion,
    plot_comparison,
    thermostat_check,
)
from .distributions import (
    DensityResult,
    Distribution,
    compute_angles,
    compute_bonds,
    compute_density,
    compute_dihedrals,
    compute_distribution,
    density_timeseries,
    distribution_overlap,
    enumerate_angles,
    enumerate_dihedrals,
    molecule_centers,
)
from .force_noise import force_noise_fraction
from .manybody import LocalStructure, compute_local_structure, first_minimum, overlap_with_error
from .msd import (
    DiffusionResult,
    DiffusiveRegime,
    MSDResult,
    apply_finite_size_correction,
    combine_replicas,
    compute_msd,
    detect_linear_regime,
    diffusion_coefficient,
    diffusive_regime,
    fit_diffusion,
    remove_com_drift,
    unwrap_positions,
    yeh_hummer_correction,
)
from .rdf import RDFResult, compute_rdf, coordination_number, rdf_difference
from .statistics import (
    EquilibrationResult,
    Estimate,
    block_average,
    bootstrap,
    detect_equilibration,
    mean_with_error,
    statistical_inefficiency,
)
from .vacf import GreenKuboResult, VACFResult, compute_vacf, green_kubo_diffusion

__all__ = [
    "as_boxes",
    "as_times",
    "as_trajectory",
    "check_constant_box_shape",
    "minimum_image",
    "GAS_CONSTANT",
    "ArrheniusFit",
    "fit_arrhenius",
    "Comparison",
    "ComparisonRow",
    "TemperatureComparison",
    "compare_runs",
    "diffusion_check",
    "compare_temperatures",
    "molecular_diffusion",
    "plot_comparison",
    "thermostat_check",
    "DensityResult",
    "Distribution",
    "compute_angles",
    "compute_bonds",
    "compute_density",
    "compute_dihedrals",
    "compute_distribution",
    "density_timeseries",
    "distribution_overlap",
    "enumerate_angles",
    "enumerate_dihedrals",
    "molecule_centers",
    "LocalStructure",
    "force_noise_fraction",
    "compute_local_structure",
    "first_minimum",
    "overlap_with_error",
    "DiffusionResult",
    "DiffusiveRegime",
    "MSDResult",
    "apply_finite_size_correction",
    "combine_replicas",
    "compute_msd",
    "detect_linear_regime",
    "diffusive_regime",
    "diffusion_coefficient",
    "fit_diffusion",
    "remove_com_drift",
    "unwrap_positions",
    "yeh_hummer_correction",
    "RDFResult",
    "compute_rdf",
    "coordination_number",
    "rdf_difference",
    "EquilibrationResult",
    "Estimate",
    "block_average",
    "bootstrap",
    "detect_equilibration",
    "mean_with_error",
    "statistical_inefficiency",
    "GreenKuboResult",
    "VACFResult",
    "compute_vacf",
    "green_kubo_diffusion",
]

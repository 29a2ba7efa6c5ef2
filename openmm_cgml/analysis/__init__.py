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
    molecular_diffusion,
    plot_comparison,
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
from .msd import (
    DiffusionResult,
    MSDResult,
    compute_msd,
    detect_linear_regime,
    diffusion_coefficient,
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
    "compare_temperatures",
    "molecular_diffusion",
    "plot_comparison",
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
    "DiffusionResult",
    "MSDResult",
    "compute_msd",
    "detect_linear_regime",
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

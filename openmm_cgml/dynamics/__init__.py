"""Dynamics: the acceleration factor alpha = D_CG / D_AA, alpha(T) models, the on-the-fly
time-correlation reporter that rescales CG time to AA time, and the shear viscosity (periodic perturbation)
for the finite-size correction of D."""

from __future__ import annotations

from .alpha import (
    ALPHA_MODELS,
    AccelerationFactor,
    AlphaModel,
    ArrheniusAlpha,
    ConstantAlpha,
    acceleration_factor,
    load_alpha_model,
    save_alpha_model,
)
from .correlator import CorrelatorResult, MultiTauCorrelator
from .reporter import TimeCorrelationReporter
from .viscosity import ViscosityEstimate, ViscosityResult, periodic_perturbation_viscosity, viscosity_from_amplitude

__all__ = [
    "ALPHA_MODELS",
    "AccelerationFactor",
    "AlphaModel",
    "ArrheniusAlpha",
    "ConstantAlpha",
    "acceleration_factor",
    "load_alpha_model",
    "save_alpha_model",
    "CorrelatorResult",
    "MultiTauCorrelator",
    "TimeCorrelationReporter",
    "ViscosityEstimate",
    "ViscosityResult",
    "periodic_perturbation_viscosity",
    "viscosity_from_amplitude",
]

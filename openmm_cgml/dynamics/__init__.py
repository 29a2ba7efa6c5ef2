"""Dynamics: the acceleration factor alpha = D_CG / D_AA, alpha(T) models, and the on-the-fly
time-correlation reporter that rescales CG time to AA time."""

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
]

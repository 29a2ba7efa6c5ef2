"""Learning from parameter sweeps (Bag et al., J. Chem. Theory Comput. 2022): networks from force-field parameters
to the dynamic-rescaling factor alpha and to the structure-preserving (IBI) CG potential.

:class:`LearnConfig` is ``cgml learn``'s YAML and :func:`run_learn` its workflow; :func:`load_sweeps` reads sweep
directories, :func:`train_alpha_model` trains a :class:`PredictedAlpha` (an alpha model the
:class:`~openmm_cgml.dynamics.TimeCorrelationReporter` applies) and evaluates it on held-out samples;
:func:`train_potential_model` trains a :class:`PredictedPotential` (a CG force field for
:class:`~openmm_cgml.potential.CGPotential`), structure- or dynamics-preserving, and
:func:`evaluate_potential_model` / :func:`evaluate_dynamics_model` run it.  With molecule descriptors
(:mod:`~openmm_cgml.learn.descriptors`) as inputs, one model learns from several molecules and predicts for others.
"""

from __future__ import annotations

from .alpha import PredictedAlpha, cross_validate_alpha, evaluate_alpha_model, train_alpha_model
from .data import Feature, SweepData, cross_validation_folds, load_sweeps, split_by_sample
from .descriptors import (
    DESCRIPTORS,
    descriptor_features,
    molecule_descriptors,
    openff_descriptors,
    sample_descriptors,
    united_atom_descriptors,
)
from .ensemble import Ensemble, train_ensemble
from .potential import (
    PredictedPotential,
    cross_validate_potential,
    dynamic_pairs,
    evaluate_dynamics_model,
    evaluate_potential_model,
    load_ibi_targets,
    train_potential_model,
)
from .workflow import (
    AlphaSettings,
    DynamicsSettings,
    LearnConfig,
    LearnResult,
    NetworkSettings,
    PotentialSettings,
    run_learn,
)

__all__ = ["DESCRIPTORS", "descriptor_features", "molecule_descriptors", "openff_descriptors", "sample_descriptors",
           "united_atom_descriptors", "AlphaSettings", "DynamicsSettings", "Ensemble", "Feature", "LearnConfig", "LearnResult", "NetworkSettings",
           "PotentialSettings", "PredictedAlpha", "PredictedPotential", "SweepData", "cross_validate_alpha",
           "cross_validate_potential", "cross_validation_folds", "dynamic_pairs",
           "evaluate_alpha_model", "evaluate_dynamics_model", "evaluate_potential_model", "load_ibi_targets",
           "load_sweeps", "run_learn", "split_by_sample", "train_alpha_model", "train_ensemble",
           "train_potential_model"]

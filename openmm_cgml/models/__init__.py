"""Torch-only CG models: the model and prior contracts, neighbour lists, the SchNet-style network, bundles.

Nothing here imports ``openmm.app`` or :mod:`openmm_cgml.forces`; the OpenMM bridges live in
:mod:`openmm_cgml.forces.neural`.
"""

from .base import CGModel, PriorOnlyModel
from .bundle import BUNDLE_FORMAT, ModelBundle, load_bundle, save_bundle
from .neighbors import (
    NNPOpsPairSearch,
    PairSearch,
    batched_neighbor_pairs,
    brute_force_pairs,
    cell_list_pairs,
    check_cutoff,
    half_min_width,
    minimum_image,
    neighbor_pairs,
    nnpops_available,
    nnpops_neighbor_pairs,
)
from .priors import PRIORS, HarmonicAnglePrior, HarmonicBondPrior, Prior, RepulsionPrior, prior_configs
from .registry import MODELS, build_model, forces_and_energy
from .schnet import CGSchNet, SchNetConfig
from .tables import FilterTable, hermite_coefficients

__all__ = [
    "CGModel",
    "PriorOnlyModel",
    "BUNDLE_FORMAT",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
    "batched_neighbor_pairs",
    "brute_force_pairs",
    "cell_list_pairs",
    "check_cutoff",
    "half_min_width",
    "minimum_image",
    "neighbor_pairs",
    "nnpops_available",
    "nnpops_neighbor_pairs",
    "PairSearch",
    "NNPOpsPairSearch",
    "PRIORS",
    "Prior",
    "RepulsionPrior",
    "HarmonicBondPrior",
    "HarmonicAnglePrior",
    "prior_configs",
    "MODELS",
    "CGSchNet",
    "SchNetConfig",
    "FilterTable",
    "hermite_coefficients",
    "build_model",
    "forces_and_energy",
]

"""Torch-only CG models: neighbour lists, the SchNet-style network, priors, bundles.

Nothing here imports ``openmm.app``; OpenMM bridges live in :mod:`openmm_cgml.forces.neural`.
"""

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
from .priors import PRIORS, HarmonicAnglePrior, HarmonicBondPrior, Prior, RepulsionPrior, angle_key, pair_key
from .schnet import MODELS, CGSchNet, FilterTable, build_model, forces_and_energy, hermite_coefficients
from .topology import ModelTopology, angles_from_bonds, mapping_fingerprint, model_topology

__all__ = [
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
    "angle_key",
    "pair_key",
    "MODELS",
    "CGSchNet",
    "FilterTable",
    "hermite_coefficients",
    "build_model",
    "forces_and_energy",
    "ModelTopology",
    "angles_from_bonds",
    "mapping_fingerprint",
    "model_topology",
]

"""Atom -> bead mappings: :class:`CGMapping`, its schemes, CG topologies and mapped datasets.

This subpackage imports neither torch (the learned scheme imports it when it runs) nor the CLI.
"""

from ..geometry import minimum_image
from ._dataset import constraint_pairs_from_metadata, map_dataset
from ._force_map import optimal_force_map
from ._learned import LearnedMapping, learn_mapping, reconstruction_rmsd
from ._learned_polymer import learn_repeat_unit_mapping
from ._mapping import MAPPING_FORMAT, CGMapping, MoleculeType
from ._molecules import MoleculeGraph, atom_symmetry_classes, find_molecules
from ._partition import balanced_partition
from ._polymer import ChainBoxCheck, check_chain_box, from_repeat_unit
from ._registry import MAPPINGS, create_mapping
from ._schemes import automatic, from_groups, from_smarts, mapping_from_spec

__all__ = [
    "CGMapping",
    "MAPPINGS",
    "create_mapping",
    "automatic",
    "from_groups",
    "from_smarts",
    "mapping_from_spec",
    "from_repeat_unit",
    "check_chain_box",
    "ChainBoxCheck",
    "MoleculeType",
    "MoleculeGraph",
    "MAPPING_FORMAT",
    "map_dataset",
    "optimal_force_map",
    "constraint_pairs_from_metadata",
    "find_molecules",
    "atom_symmetry_classes",
    "balanced_partition",
    "LearnedMapping",
    "learn_mapping",
    "reconstruction_rmsd",
    "learn_repeat_unit_mapping",
    "minimum_image",
]

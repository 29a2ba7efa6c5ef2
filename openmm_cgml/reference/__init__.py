"""All-atom reference: liquids from OpenFF molecules, simulated in OpenMM, recorded with forces."""

from .liquid import Component, Liquid, assign_charges, build_liquid, load_forcefield, pack_molecules
from .reporter import DatasetReporter
from .run import ComponentConfig, ReferenceConfig, ReferenceResult, choose_platform, run_reference

__all__ = [
    "Component",
    "ComponentConfig",
    "DatasetReporter",
    "Liquid",
    "ReferenceConfig",
    "ReferenceResult",
    "assign_charges",
    "build_liquid",
    "choose_platform",
    "load_forcefield",
    "pack_molecules",
    "run_reference",
]

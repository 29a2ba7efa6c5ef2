"""All-atom reference: liquids from OpenFF molecules, simulated in OpenMM, recorded with forces."""

from .liquid import (
    Component,
    Liquid,
    assign_charges,
    build_liquid,
    forcefield_parameter_value,
    load_forcefield,
    pack_molecules,
    set_forcefield_parameters,
)
from .reporter import DatasetReporter
from .run import (
    ComponentConfig,
    ForceFieldParameter,
    ReferenceConfig,
    ReferenceResult,
    choose_platform,
    compress_to_box,
    repartition_hydrogen_mass,
    run_reference,
)
from .unperturbed import unperturbed_conformations, unperturbed_system

__all__ = [
    "Component",
    "ComponentConfig",
    "ForceFieldParameter",
    "DatasetReporter",
    "Liquid",
    "ReferenceConfig",
    "ReferenceResult",
    "assign_charges",
    "build_liquid",
    "choose_platform",
    "compress_to_box",
    "forcefield_parameter_value",
    "load_forcefield",
    "pack_molecules",
    "repartition_hydrogen_mass",
    "run_reference",
    "set_forcefield_parameters",
    "unperturbed_conformations",
    "unperturbed_system",
]

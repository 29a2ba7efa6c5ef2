"""openmm_cgml: coarse-grained models from all-atom OpenFF/OpenMM references, run in OpenMM.

Heavy parts (OpenFF, torch) are imported only by the modules that need them, so
``import openmm_cgml`` stays light.
"""

from __future__ import annotations

import logging

from ._version import __version__
from .exceptions import (
    CGMLError,
    CheckpointError,
    ConfigurationError,
    CorruptFileError,
    DatasetError,
    InvalidMappingError,
    InvalidMoleculeError,
    InvalidSystemError,
    MissingDependencyError,
    SimulationError,
    UnitError,
    UnknownNameError,
)
from .registry import Registry

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Main public classes, imported on first use so that ``import openmm_cgml`` stays light.
_LAZY = {
    "CGMapping": "openmm_cgml.mapping",
    "CGPotential": "openmm_cgml.potential",
    "CGTopology": "openmm_cgml.topology",
    "energy_components": "openmm_cgml.potential",
    "CGSystemBuilder": "openmm_cgml.builder",
    "DatasetReporter": "openmm_cgml.reference.reporter",
    "TimeCorrelationReporter": "openmm_cgml.dynamics",
    "open_dataset": "openmm_cgml.dataset",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'openmm_cgml' has no attribute {name!r}")

__all__ = [
    "__version__",
    "CGMapping",
    "CGPotential",
    "CGTopology",
    "energy_components",
    "CGSystemBuilder",
    "DatasetReporter",
    "TimeCorrelationReporter",
    "open_dataset",
    "Registry",
    "CGMLError",
    "CheckpointError",
    "ConfigurationError",
    "CorruptFileError",
    "DatasetError",
    "InvalidMappingError",
    "InvalidMoleculeError",
    "InvalidSystemError",
    "MissingDependencyError",
    "SimulationError",
    "UnitError",
    "UnknownNameError",
]

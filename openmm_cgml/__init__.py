"""openmm_cgml: coarse-grained models from all-atom OpenFF/OpenMM references, run in OpenMM.

Heavy parts (OpenFF, torch) are imported only by the modules that need them, so
``import openmm_cgml`` stays light.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("openmm_cgml")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
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

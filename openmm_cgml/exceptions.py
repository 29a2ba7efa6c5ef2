"""Exception hierarchy of openmm_cgml.

Every error raised on purpose by the package derives from :class:`CGMLError`, and
also from the builtin exception that matches its meaning, so that callers can
catch either ``CGMLError`` or, for example, ``ValueError``.  Messages say what was
received and what was expected.
"""

from __future__ import annotations

__all__ = [
    "CGMLError",
    "ConfigurationError",
    "UnitError",
    "UnknownNameError",
    "InvalidMoleculeError",
    "InvalidMappingError",
    "InvalidSystemError",
    "MissingDependencyError",
    "DatasetError",
    "CorruptFileError",
    "SimulationError",
    "CheckpointError",
    "TrajectoryError",
    "UntrustedContentError",
]


class CGMLError(Exception):
    """Root of all errors raised by openmm_cgml."""


class ConfigurationError(CGMLError, ValueError):
    """A configuration value is invalid (out of range, inconsistent, unknown key)."""


class UnitError(ConfigurationError):
    """A quantity is missing its unit or carries a unit of the wrong dimension."""


class UnknownNameError(CGMLError, KeyError):
    """A name looked up in a registry does not exist; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class InvalidMoleculeError(CGMLError, ValueError):
    """A molecule specification (SMILES, OpenFF Molecule) cannot be used."""


class InvalidMappingError(CGMLError, ValueError):
    """An atom-to-bead mapping is not a valid partition or cannot be used as asked."""


class InvalidSystemError(CGMLError, ValueError):
    """A system is inconsistent (net charge, box smaller than twice the cutoff, ...)."""


class MissingDependencyError(CGMLError, ImportError):
    """An optional dependency or external program is needed but not installed."""


class DatasetError(CGMLError, OSError):
    """A dataset cannot be read or written (unwritable path, wrong layout)."""


class CorruptFileError(DatasetError):
    """A file exists but is truncated, corrupt, or not of the expected kind."""


class SimulationError(CGMLError, RuntimeError):
    """A simulation produced invalid numbers (NaN, exploding energy)."""


class CheckpointError(CGMLError, RuntimeError):
    """A checkpoint cannot be used to resume (corrupt, or from a different run)."""


class TrajectoryError(CGMLError, ValueError):
    """Trajectory arrays cannot be analysed as given (shapes, frame counts, boxes, times)."""


class UntrustedContentError(CorruptFileError):
    """A file holds executable content (a pickle, a ``PythonForce``) that is loaded only when the caller
    says it trusts the file (``trusted=True``)."""

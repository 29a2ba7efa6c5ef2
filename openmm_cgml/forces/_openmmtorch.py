"""Import OpenMM-Torch without its stale deprecation warning.

``openmmtorch`` (SWIG) imports ``simtk.openmm``, whose shim logs "importing 'simtk.openmm' is deprecated" on
the root logger: a warning about a line in a dependency that users cannot act on.  It is dropped here, and
nothing else is.
"""

from __future__ import annotations

import logging

from ..exceptions import MissingDependencyError

_SIMTK_WARNING = "Warning: importing 'simtk.openmm' is deprecated"


class _DropSimtkWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_SIMTK_WARNING)


def import_openmmtorch(missing: str):
    """The ``openmmtorch`` module; MissingDependencyError(``missing``) if it is not installed."""
    root = logging.getLogger()
    drop = _DropSimtkWarning()
    root.addFilter(drop)
    try:
        import openmmtorch
    except ImportError as exc:
        raise MissingDependencyError(missing) from exc
    finally:
        root.removeFilter(drop)
    return openmmtorch

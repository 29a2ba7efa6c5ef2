"""Build, equilibrate and record an all-atom reference: the ``cgml reference`` workflow.

:func:`run_reference` is :func:`openmm_cgml.reference.run_reference` with the diffusion check that
``max_production`` needs (:func:`openmm_cgml.analysis.diffusion_check`: the molecular centre-of-mass MSD has
reached the diffusive regime), so a production extends itself until D can be trusted, or until the budget.
"""

from __future__ import annotations

from ..reference.run import ReferenceConfig, ReferenceResult
from ..reference.run import run_reference as _run_reference

__all__ = ["ReferenceConfig", "ReferenceResult", "run_reference"]


def run_reference(config, output, **kwargs) -> ReferenceResult:
    """:func:`openmm_cgml.reference.run_reference` (same arguments), with ``diffusion_check`` defaulting to
    :func:`openmm_cgml.analysis.diffusion_check`."""
    from ..analysis.compare import diffusion_check

    kwargs.setdefault("diffusion_check", diffusion_check)
    return _run_reference(config, output, **kwargs)

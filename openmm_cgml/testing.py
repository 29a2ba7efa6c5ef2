"""Public helpers for tests of openmm_cgml and of code built on it."""

from __future__ import annotations

import shutil

import pytest

__all__ = ["has_openff", "requires_openff", "requires_ambertools"]


def has_openff() -> bool:
    """Whether the OpenFF toolkit and Interchange can be imported."""
    try:
        import openff.interchange  # noqa: F401
        import openff.toolkit  # noqa: F401
    except ImportError:
        return False
    return True


requires_openff = pytest.mark.skipif(not has_openff(), reason="the OpenFF toolkit is not installed")
requires_ambertools = pytest.mark.skipif(shutil.which("sqm") is None, reason="AmberTools (sqm) not installed")

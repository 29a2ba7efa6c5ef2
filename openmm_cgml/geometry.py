"""Periodic-box geometry in NumPy: the one minimum image, box widths and cutoff rule of the package.

Boxes are ``(3, 3)`` arrays whose rows are the box vectors (nm), as OpenMM gives them; OpenMM's
reduced triclinic boxes (``a = (ax, 0, 0)``, ``b = (bx, by, 0)``, ``c = (cx, cy, cz)``) and general
ones are both handled.  The torch twin of :func:`minimum_image` (for models and neighbour lists)
is :func:`openmm_cgml.models.neighbors.minimum_image`; it obeys the same cutoff rule.
"""

from __future__ import annotations

import numpy as np

from .exceptions import InvalidSystemError

__all__ = ["minimum_image", "perpendicular_widths", "half_min_width", "check_cutoff", "box_volumes",
           "wrap_into_box", "as_box"]


def as_box(box, *, name: str = "box") -> np.ndarray:
    """``box`` (array, list of 3-vectors or an openmm Quantity) as a float ``(3, 3)`` array in nm."""
    from .units import strip

    arr = np.asarray(strip(box, "length", name=name), dtype=float)
    if arr.shape != (3, 3):
        raise InvalidSystemError(f"{name} must be three 3-vectors (rows, nm), got an array of shape {arr.shape}")
    return arr


def box_volumes(boxes) -> np.ndarray:
    """Volumes (nm^3) of boxes ``(..., 3, 3)``."""
    return np.abs(np.linalg.det(np.asarray(boxes, dtype=float)))


def perpendicular_widths(box) -> np.ndarray:
    """Distances (nm) between opposite faces of one box ``(3, 3)``: ``V / |b x c|`` and its cyclic permutations.

    For a triclinic box these are smaller than the box vectors' lengths (and than the diagonal
    elements), and they are what the minimum-image convention is limited by.
    """
    box = np.asarray(box, dtype=float)
    vol = abs(np.linalg.det(box))
    return np.array([vol / np.linalg.norm(np.cross(box[(i + 1) % 3], box[(i + 2) % 3])) for i in range(3)])


def half_min_width(box) -> float:
    """Half the smallest perpendicular width of ``box`` (nm): the longest cutoff the minimum image allows."""
    return 0.5 * float(perpendicular_widths(box).min())


def check_cutoff(cutoff: float, box, what: str = "the cutoff") -> None:
    """Refuse a cutoff longer than half the smallest perpendicular box width (the minimum-image limit).

    ``box`` is one ``(3, 3)`` box, several ``(n, 3, 3)`` (the smallest is checked) or None (no check).

    Raises
    ------
    InvalidSystemError
        Naming the cutoff, the limit and the box widths.
    """
    if box is None:
        return
    boxes = np.asarray(box, dtype=float).reshape(-1, 3, 3)
    widths = np.array([perpendicular_widths(b) for b in boxes])
    k = int(np.argmin(widths.min(axis=1)))
    limit = 0.5 * float(widths[k].min())
    if float(cutoff) > limit + 1e-12:
        raise InvalidSystemError(
            f"{what}: the cutoff {float(cutoff):.4g} nm is longer than half the smallest box width ({limit:.4g} nm; "
            f"perpendicular box widths {np.round(widths[k], 4).tolist()} nm); the minimum-image convention would "
            "miss or double-count pairs. Use a shorter cutoff or a larger box"
        )


def minimum_image(vectors, box) -> np.ndarray:
    """Map displacement vectors ``(..., 3)`` to their periodic image nearest the origin (nm).

    Works in fractional coordinates, exact for displacements shorter than half the smallest
    perpendicular box width (:func:`check_cutoff`), for orthorhombic and triclinic boxes alike.
    ``box`` is one box ``(3, 3)`` or per-frame boxes ``(F, 3, 3)`` for vectors ``(F, ..., 3)``.
    """
    vectors = np.asarray(vectors, dtype=float)
    box = np.asarray(box, dtype=float)
    inv = np.linalg.inv(box)
    if box.ndim == 2:
        frac = vectors @ inv
        frac -= np.round(frac)
        return frac @ box
    frac = np.einsum("f...i,fij->f...j", vectors, inv)
    frac -= np.round(frac)
    return np.einsum("f...i,fij->f...j", frac, box)


def wrap_into_box(positions, box) -> tuple[np.ndarray, np.ndarray]:
    """Wrap positions ``(n, 3)`` into the parallelepiped of ``box``; return (cartesian, fractional)."""
    box = np.asarray(box, dtype=float)
    frac = np.asarray(positions, dtype=float) @ np.linalg.inv(box)
    frac -= np.floor(frac)
    return frac @ box, frac

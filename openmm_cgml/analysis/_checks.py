"""Input validation and periodic-box helpers shared by the analysis functions.

Conventions: positions ``(n_frames, n_particles, 3)`` in nm, boxes ``(n_frames, 3, 3)`` in nm with the
box vectors as ROWS (OpenMM's and the dataset format's convention), times ``(n_frames,)`` in ps.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import TrajectoryError
from ..geometry import box_volumes, minimum_image, perpendicular_widths, wrap_into_box

__all__ = [
    "as_trajectory",
    "as_boxes",
    "as_times",
    "check_constant_box_shape",
    "minimum_image",
    "box_volumes",
    "perpendicular_widths",
    "wrap_into_box",
]


def as_trajectory(values, name: str = "positions", *, n_particles: int | None = None) -> np.ndarray:
    """Return ``values`` as a float64 array ``(n_frames, n_particles, 3)`` or raise a clear error."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 3:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise TrajectoryError(f"{name} must have shape (n_frames, n_particles, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise TrajectoryError(f"{name} has zero frames; at least one frame is needed")
    if arr.shape[1] == 0:
        raise TrajectoryError(f"{name} has zero particles")
    if n_particles is not None and arr.shape[1] != n_particles:
        raise TrajectoryError(f"{name} has {arr.shape[1]} particles, expected {n_particles}")
    if not np.all(np.isfinite(arr)):
        raise TrajectoryError(f"{name} contains NaN or infinite values")
    return arr


def as_boxes(box, n_frames: int, name: str = "box") -> np.ndarray:
    """Return per-frame box vectors ``(n_frames, 3, 3)`` (nm, rows are vectors).

    Accepts box lengths ``(3,)``, one box ``(3, 3)``, per-frame lengths ``(n_frames, 3)`` or per-frame
    vectors ``(n_frames, 3, 3)``.
    """
    arr = np.asarray(box, dtype=np.float64)
    if arr.shape == (3,):
        arr = np.diag(arr)
    if arr.shape == (3, 3):
        arr = np.broadcast_to(arr, (n_frames, 3, 3)).copy()
    elif arr.ndim == 2 and arr.shape[1] == 3:
        arr = np.einsum("fi,ij->fij", arr, np.eye(3))
    if arr.ndim != 3 or arr.shape[1:] != (3, 3):
        raise TrajectoryError(
            f"{name} must be box lengths (3,), vectors (3, 3), or per frame (n_frames, 3) / (n_frames, 3, 3); "
            f"got shape {np.shape(box)}"
        )
    if arr.shape[0] != n_frames:
        raise TrajectoryError(f"{name} has {arr.shape[0]} frames but the trajectory has {n_frames}")
    vol = np.linalg.det(arr)
    if not np.all(np.isfinite(vol)) or np.any(vol <= 0):
        raise TrajectoryError(f"{name} has a degenerate or left-handed frame (volume {vol.min():.3g} nm^3)")
    return arr


def as_times(times, n_frames: int, name: str = "times", *, uniform: bool = True) -> np.ndarray:
    """Return frame times ``(n_frames,)`` in ps, strictly increasing (and evenly spaced if ``uniform``)."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise TrajectoryError(f"{name} must be one-dimensional (n_frames,), got shape {t.shape}")
    if t.shape[0] != n_frames:
        raise TrajectoryError(f"{name} has {t.shape[0]} entries but the trajectory has {n_frames} frames")
    if n_frames > 1:
        dt = np.diff(t)
        if np.any(dt <= 0):
            bad = int(np.argmax(dt <= 0))
            raise TrajectoryError(
                f"{name} must increase strictly; frame {bad + 1} has time {t[bad + 1]!r} ps after {t[bad]!r} ps"
            )
        if uniform and not np.allclose(dt, dt[0], rtol=1e-6, atol=1e-9):
            raise TrajectoryError(
                f"{name} must be evenly spaced for an all-origins (FFT) correlation; spacings range from "
                f"{dt.min():.6g} to {dt.max():.6g} ps"
            )
    return t


def check_constant_box_shape(boxes: np.ndarray, *, rtol: float = 1e-4, require_cubic: bool = False,
                             what: str = "this analysis") -> None:
    """Raise if the box changes shape (angles or aspect ratios) between frames.

    An isotropic volume change (NPT) is allowed; a change of shape is not.
    """
    scaled = boxes / np.cbrt(box_volumes(boxes))[:, None, None]
    if not np.allclose(scaled, scaled[0], rtol=rtol, atol=rtol):
        dev = np.abs(scaled - scaled[0]).max()
        raise TrajectoryError(
            f"{what} assumes a box of constant shape, but the box changes shape during the trajectory "
            f"(largest change of the volume-normalised box vectors: {dev:.3g})"
        )
    if require_cubic:
        lengths = np.linalg.norm(boxes[0], axis=1)
        off_diag = boxes[0] - np.diag(np.diag(boxes[0]))
        if not (np.allclose(lengths, lengths[0], rtol=rtol) and np.allclose(off_diag, 0, atol=rtol * lengths[0])):
            raise TrajectoryError(f"{what} needs a cubic box; got box vectors {boxes[0].tolist()} nm")

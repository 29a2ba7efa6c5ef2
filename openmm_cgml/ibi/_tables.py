"""Target distributions in (VOTCA ``*.dist.tgt``) and potential tables out (GROMACS, LAMMPS, OpenMM)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ..exceptions import ConfigurationError, CorruptFileError, DatasetError

__all__ = [
    "TargetRDF",
    "read_votca_distribution",
    "write_votca_distribution",
    "write_gromacs_table",
]


@dataclass(frozen=True)
class TargetRDF:
    """A target g(r) on a uniform, increasing grid (nm)."""

    r: np.ndarray
    g: np.ndarray
    source: str = ""

    def __post_init__(self):
        validate_grid(self.r, self.g, self.source or "target RDF")

    def on(self, r_new: np.ndarray) -> np.ndarray:
        """g interpolated on another grid; the grid must lie within the target's range."""
        if r_new[-1] > self.r[-1] + 1e-9 or r_new[0] < self.r[0] - 0.5 * (self.r[1] - self.r[0]) - 1e-9:
            raise ConfigurationError(
                f"{self.source or 'target RDF'} covers {self.r[0]:.4g}..{self.r[-1]:.4g} nm but values are needed "
                f"for {r_new[0]:.4g}..{r_new[-1]:.4g} nm (is the cutoff beyond the target's range?)"
            )
        return np.interp(r_new, self.r, self.g)


def validate_grid(r, g, what: str) -> None:
    """Refuse a bad grid: too short, not 1-D, not strictly increasing, not uniform, NaN or negative g."""
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if r.ndim != 1 or r.shape != g.shape:
        raise ConfigurationError(f"{what}: r and g must be 1-D of equal length, got shapes {r.shape} and {g.shape}")
    if len(r) < 4:
        raise ConfigurationError(f"{what}: a distribution needs at least 4 grid points, got {len(r)}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(g))):
        raise ConfigurationError(f"{what}: the grid or the values contain NaN or infinity")
    dr = np.diff(r)
    if np.any(dr <= 0):
        k = int(np.flatnonzero(dr <= 0)[0])
        raise ConfigurationError(f"{what}: r must increase strictly; r[{k}] = {r[k]} is followed by {r[k + 1]}")
    if np.max(np.abs(dr - dr.mean())) > 1e-3 * dr.mean() + 1e-9:
        k = int(np.argmax(np.abs(dr - dr.mean())))
        raise ConfigurationError(
            f"{what}: the grid must be uniform (spacing {dr.mean():.6g} nm on average, but r[{k + 1}] - r[{k}] = "
            f"{dr[k]:.6g} nm)"
        )
    if np.any(g < 0):
        raise ConfigurationError(f"{what}: g(r) must be non-negative; g({r[np.argmin(g)]:.4g}) = {g.min():.4g}")


def read_votca_distribution(path) -> TargetRDF:
    """Read a VOTCA table (``*.dist.tgt``, ``*.dist.new``): columns r, g(r) and an optional flag.

    Comment lines start with ``#`` or ``@``.  Rows flagged ``u`` (undefined) or ``o`` (out of
    range) are kept (VOTCA writes their values too); only the numbers are checked.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read the target distribution {path}: {exc.strerror}") from exc
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s[0] in "#@":
            continue
        parts = re.split(r"\s+", s)
        try:
            r, g = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise CorruptFileError(f"{path}:{n}: expected 'r g(r) [flag]', got {line!r}") from None
        if len(parts) > 2 and parts[2] not in ("i", "o", "u"):
            raise CorruptFileError(f"{path}:{n}: the flag must be i, o or u, got {parts[2]!r}")
        rows.append((r, g))
    if not rows:
        raise CorruptFileError(f"{path} holds no data rows")
    arr = np.asarray(rows)
    return TargetRDF(arr[:, 0], arr[:, 1], source=str(path))


def write_votca_distribution(path, r, g) -> None:
    """Write r, g, flag columns (VOTCA format)."""
    lines = ["# r/nm g(r) flag  (written by openmm_cgml)"]
    lines += [f"{x:.6f} {y:.8e} i" for x, y in zip(r, g)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _grid_table(r, u, spacing, r_max):
    from ..forces.tabulated import resample_table

    n = int(round(r_max / spacing))
    grid = np.arange(n + 1) * spacing
    v = resample_table(r, u, grid)
    f = -np.gradient(v, spacing)
    v[grid > r[-1]] = 0.0
    f[grid > r[-1]] = 0.0
    return grid, v, f


def write_gromacs_table(path, r, u, *, spacing: float = 0.002, table_extension: float = 1.0) -> None:
    """A GROMACS user table ``table_A_B.xvg`` holding U(r) in the repulsion columns: for GROMACS 2019 and older
    only (the group cutoff scheme, removed in 2020; current GROMACS takes no user non-bonded tables, so
    ``cgml export`` writes the pairs as tabulated bonds instead).

    Columns: r, f, -f', g, -g', h, -h' (GROMACS' convention); f = g = 0 and h = U, so the
    pair is used with C6 = 0, C12 = 1 (``energygrp_table``).  The table runs from 0 to
    the cutoff plus ``table_extension`` (nm), zero beyond the potential's range.
    """
    grid, v, f = _grid_table(r, u, spacing, float(np.asarray(r)[-1]) + table_extension)
    lines = ["# GROMACS tabulated pair potential written by openmm_cgml; use with C6=0, C12=1",
             "# r/nm  f  -f'  g  -g'  h=U/kJ mol^-1  -h'=F/kJ mol^-1 nm^-1"]
    lines += [f"{x:12.6f} {0.0:15.8e} {0.0:15.8e} {0.0:15.8e} {0.0:15.8e} {e:15.8e} {fo:15.8e}"
              for x, e, fo in zip(grid, v, f)]
    atomic_write_text(path, "\n".join(lines) + "\n")

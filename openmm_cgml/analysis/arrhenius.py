"""Arrhenius fits of a rate-like quantity (here the diffusion coefficient) over temperature.

ln D(T) = ln A - Ea / (R T), fitted by weighted linear least squares in (1/T, ln D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import TrajectoryError
from ..units import KB

__all__ = ["GAS_CONSTANT", "ArrheniusFit", "fit_arrhenius"]

#: Molar gas constant, kJ/(mol K): the package's one value (:data:`openmm_cgml.units.KB`).
GAS_CONSTANT = KB


@dataclass(frozen=True)
class ArrheniusFit:
    """Result of :func:`fit_arrhenius`.

    Attributes
    ----------
    ln_prefactor, ln_prefactor_err : float
        ln A (A in the units of the fitted values, e.g. nm^2/ps) and its standard error.
    activation_energy, activation_energy_err : float
        Ea and its standard error, kJ/mol.
    covariance : ndarray, shape (2, 2)
        Covariance of (ln A, Ea).
    temperatures : ndarray (n,), K
    values, errors : ndarray (n,)
        The fitted data (errors NaN if none were given).
    chi2_per_dof : float
        Reduced chi-squared (NaN without errors or with 2 points).
    """

    ln_prefactor: float
    ln_prefactor_err: float
    activation_energy: float
    activation_energy_err: float
    covariance: np.ndarray
    temperatures: np.ndarray
    values: np.ndarray
    errors: np.ndarray
    chi2_per_dof: float

    @property
    def prefactor(self) -> float:
        """A, in the units of the fitted values."""
        return float(np.exp(self.ln_prefactor))

    def predict(self, temperature) -> tuple[np.ndarray, np.ndarray]:
        """D(T) and its standard error from the fit's covariance, for temperatures in K."""
        t = np.asarray(temperature, dtype=np.float64)
        jac = np.stack([np.ones_like(t), -1.0 / (GAS_CONSTANT * t)], axis=-1)
        ln_d = jac @ np.array([self.ln_prefactor, self.activation_energy])
        var = np.einsum("...i,ij,...j->...", jac, self.covariance, jac)
        d = np.exp(ln_d)
        return d, d * np.sqrt(var)


def fit_arrhenius(temperatures, values, errors=None) -> ArrheniusFit:
    """Fit ln(values) = ln A - Ea / (R T).

    Parameters
    ----------
    temperatures : array (n,), K (n >= 2; n >= 3 when no errors are given)
    values : array (n,)
        Positive values (e.g. D in nm^2/ps).
    errors : array (n,), optional
        Standard errors of ``values``; used as weights (sigma of ln D = error / D) and taken as absolute.
        Without them the parameter errors come from the scatter of the residuals.
    """
    t = np.asarray(temperatures, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != y.shape:
        raise TrajectoryError(f"temperatures and values must be 1-D of equal length, got {t.shape} and {y.shape}")
    if np.any(t <= 0) or np.any(y <= 0):
        raise TrajectoryError("temperatures and values must all be positive for an Arrhenius fit")
    if np.unique(t).size < 2:
        raise TrajectoryError(f"an Arrhenius fit needs at least 2 distinct temperatures, got {np.unique(t).tolist()}")
    ln_y = np.log(y)
    x = -1.0 / (GAS_CONSTANT * t)
    design = np.stack([np.ones_like(t), x], axis=1)
    if errors is not None:
        e = np.asarray(errors, dtype=np.float64)
        if e.shape != y.shape or np.any(~np.isfinite(e)) or np.any(e <= 0):
            raise TrajectoryError("errors must be positive and finite, one per value")
        sigma = e / y
    else:
        if t.size < 3:
            raise TrajectoryError("without errors an Arrhenius fit needs at least 3 temperatures to estimate them")
        e = np.full_like(y, np.nan)
        sigma = np.ones_like(y)
    w = 1.0 / sigma**2
    normal = design.T @ (design * w[:, None])
    cov = np.linalg.inv(normal)
    params = cov @ (design.T @ (w * ln_y))
    resid = ln_y - design @ params
    dof = t.size - 2
    chi2 = float(np.sum(w * resid**2) / dof) if dof > 0 else float("nan")
    if errors is None:
        cov = cov * chi2
        chi2 = float("nan")
    return ArrheniusFit(ln_prefactor=float(params[0]), ln_prefactor_err=float(np.sqrt(cov[0, 0])),
                        activation_energy=float(params[1]), activation_energy_err=float(np.sqrt(cov[1, 1])),
                        covariance=cov, temperatures=t, values=y, errors=e, chi2_per_dof=chi2)

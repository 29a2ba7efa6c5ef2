"""The dynamical acceleration factor alpha = D_CG / D_AA and models of its temperature dependence.

CG time is mapped to AA time by t_AA = alpha t_CG.  The contract of an alpha model (a subclass of
:class:`AlphaModel`, registered in :data:`ALPHA_MODELS` through the entry-point group
``openmm_cgml.alpha_model``, as the built-ins are):

``alpha(temperature)`` and ``alpha_err(temperature)``
    The dimensionless factor (positive) and its standard error at a temperature given in K, as a unit
    string (``"300 K"``) or as a quantity.
``name`` and ``to_data()``
    The registry name and plain constructor keywords: ``ALPHA_MODELS.create(name, **to_data())``
    rebuilds the model (:func:`save_alpha_model` / :func:`load_alpha_model` write and read it as JSON).
``example_args()``
    Constructor keywords for the contract test (``tests/test_contracts.py``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text, package_versions
from ..analysis.arrhenius import ArrheniusFit
from ..exceptions import ConfigurationError, CorruptFileError, DatasetError
from ..registry import Registry
from ..units import KB, to_md

__all__ = [
    "ALPHA_MODELS",
    "AccelerationFactor",
    "AlphaModel",
    "ConstantAlpha",
    "ArrheniusAlpha",
    "acceleration_factor",
    "save_alpha_model",
    "load_alpha_model",
]

logger = logging.getLogger(__name__)

FORMAT = "openmm_cgml.alpha_model"
FORMAT_VERSION = 1

#: Registry of alpha(T) models (entry-point group ``openmm_cgml.alpha_model``): name -> class, rebuilt from the
#: plain constructor keywords of its ``to_data()``.
ALPHA_MODELS = Registry("alpha_model")


@dataclass(frozen=True)
class AccelerationFactor:
    """alpha = D_CG / D_AA at one temperature (K), with its standard error (dimensionless)."""

    alpha: float
    alpha_err: float
    temperature: float | None = None


def acceleration_factor(d_cg: float, d_cg_err: float, d_aa: float, d_aa_err: float,
                        temperature=None) -> AccelerationFactor:
    """alpha = D_CG / D_AA with first-order error propagation (independent errors); D in any common unit."""
    if d_cg <= 0 or d_aa <= 0:
        raise ConfigurationError(f"diffusion coefficients must be positive, got D_CG={d_cg}, D_AA={d_aa}")
    alpha = d_cg / d_aa
    err = alpha * math.hypot(d_cg_err / d_cg, d_aa_err / d_aa)
    temp = None if temperature is None else to_md(temperature, "temperature", name="temperature")
    return AccelerationFactor(alpha=alpha, alpha_err=err, temperature=temp)


class AlphaModel:
    """Interface of alpha(T) models (temperatures in K or unit strings/quantities)."""

    name: str = ""

    def alpha(self, temperature) -> float:
        raise NotImplementedError

    def alpha_err(self, temperature) -> float:
        raise NotImplementedError

    def to_data(self) -> dict[str, Any]:
        """Constructor keywords as plain JSON data."""
        raise NotImplementedError

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        """Constructor keywords of a valid model, for the contract test."""
        raise NotImplementedError(f"{cls.__name__} gives no example for the contract test")


class ConstantAlpha(AlphaModel):
    """A temperature-independent alpha (alpha = 1: no rescaling, e.g. for all-atom runs)."""

    name = "constant"

    def __init__(self, alpha: float = 1.0, alpha_err: float = 0.0):
        if not alpha > 0:
            raise ConfigurationError(f"alpha must be positive, got {alpha}")
        self._alpha, self._err = float(alpha), float(alpha_err)

    def alpha(self, temperature=None) -> float:
        return self._alpha

    def alpha_err(self, temperature=None) -> float:
        return self._err

    def to_data(self) -> dict[str, Any]:
        return {"alpha": self._alpha, "alpha_err": self._err}

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"alpha": 2.5, "alpha_err": 0.3}

    def __repr__(self) -> str:
        return f"ConstantAlpha(alpha={self._alpha!r}, alpha_err={self._err!r})"


class ArrheniusAlpha(AlphaModel):
    """alpha(T) = (A_CG / A_AA) exp(-(Ea_CG - Ea_AA) / (R T)) from two Arrhenius fits of D(T).

    Parameters
    ----------
    ln_prefactor_cg, activation_energy_cg, ln_prefactor_aa, activation_energy_aa : float
        ln A (A in nm^2/ps) and Ea (kJ/mol) of the CG and AA fits.
    covariance_cg, covariance_aa : 2x2 nested lists, optional
        Covariances of (ln A, Ea) of each fit (independent of each other); zero if omitted.
    temperature_range : (float, float), optional
        Temperatures (K) the fits covered; outside it alpha is an extrapolation.
    """

    name = "arrhenius"

    def __init__(self, ln_prefactor_cg: float, activation_energy_cg: float, ln_prefactor_aa: float,
                 activation_energy_aa: float, covariance_cg=None, covariance_aa=None, temperature_range=None):
        self.ln_prefactor_cg = float(ln_prefactor_cg)
        self.activation_energy_cg = float(activation_energy_cg)
        self.ln_prefactor_aa = float(ln_prefactor_aa)
        self.activation_energy_aa = float(activation_energy_aa)
        self.covariance_cg = np.zeros((2, 2)) if covariance_cg is None else np.asarray(covariance_cg, dtype=float)
        self.covariance_aa = np.zeros((2, 2)) if covariance_aa is None else np.asarray(covariance_aa, dtype=float)
        if self.covariance_cg.shape != (2, 2) or self.covariance_aa.shape != (2, 2):
            raise ConfigurationError("covariances must be 2x2 matrices of (ln A, Ea)")
        self.temperature_range = None if temperature_range is None else tuple(float(t) for t in temperature_range)
        self._warned: set[float] = set()  # temperatures outside the range already warned about

    @classmethod
    def from_fits(cls, fit_cg: ArrheniusFit, fit_aa: ArrheniusFit) -> ArrheniusAlpha:
        """Build from the CG and AA :class:`~openmm_cgml.analysis.ArrheniusFit` of D(T)."""
        temps = np.concatenate([fit_cg.temperatures, fit_aa.temperatures])
        return cls(fit_cg.ln_prefactor, fit_cg.activation_energy, fit_aa.ln_prefactor, fit_aa.activation_energy,
                   fit_cg.covariance.tolist(), fit_aa.covariance.tolist(), (float(temps.min()), float(temps.max())))

    def _ln_alpha(self, temperature) -> tuple[float, float]:
        t = to_md(temperature, "temperature", name="temperature")
        if t <= 0:
            raise ConfigurationError(f"temperature must be positive, got {t} K")
        lo, hi = self.temperature_range or (t, t)
        if not lo - 0.5 <= t <= hi + 0.5 and t not in self._warned:
            self._warned.add(t)
            logger.warning("alpha(T) was fitted on %g-%g K; at %g K it is an extrapolation of the Arrhenius fits",
                           lo, hi, t)
        jac = np.array([1.0, -1.0 / (KB * t)])
        ln_alpha = (self.ln_prefactor_cg - self.ln_prefactor_aa) - (
            self.activation_energy_cg - self.activation_energy_aa) / (KB * t)
        var = jac @ self.covariance_cg @ jac + jac @ self.covariance_aa @ jac
        return float(ln_alpha), float(math.sqrt(max(var, 0.0)))

    def alpha(self, temperature) -> float:
        return math.exp(self._ln_alpha(temperature)[0])

    def alpha_err(self, temperature) -> float:
        ln_alpha, sigma = self._ln_alpha(temperature)
        return math.exp(ln_alpha) * sigma

    def to_data(self) -> dict[str, Any]:
        return {
            "ln_prefactor_cg": self.ln_prefactor_cg,
            "activation_energy_cg": self.activation_energy_cg,
            "ln_prefactor_aa": self.ln_prefactor_aa,
            "activation_energy_aa": self.activation_energy_aa,
            "covariance_cg": self.covariance_cg.tolist(),
            "covariance_aa": self.covariance_aa.tolist(),
            "temperature_range": None if self.temperature_range is None else list(self.temperature_range),
        }

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"ln_prefactor_cg": 1.2, "activation_energy_cg": 9.0, "ln_prefactor_aa": 0.4,
                "activation_energy_aa": 12.0, "covariance_cg": [[0.01, 0.002], [0.002, 0.2]],
                "covariance_aa": [[0.02, 0.003], [0.003, 0.3]], "temperature_range": [280.0, 340.0]}

    def __repr__(self) -> str:
        return (f"ArrheniusAlpha(Ea_CG={self.activation_energy_cg:.4g} kJ/mol, "
                f"Ea_AA={self.activation_energy_aa:.4g} kJ/mol)")


_UNITS = {"ln_prefactor": "ln(nm**2/ps)", "activation_energy": "kJ/mol", "temperature": "K", "alpha": "1"}


def save_alpha_model(path, model: AlphaModel, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a small JSON file (atomically), with units and package versions."""
    if not model.name or model.name not in ALPHA_MODELS:
        raise ConfigurationError(f"alpha model {model!r} is not registered in ALPHA_MODELS; register its class first")
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.name, "parameters": model.to_data(),
            "units": _UNITS, "metadata": dict(metadata or {}), "package_versions": package_versions()}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


def load_alpha_model(path) -> AlphaModel:
    """Read an alpha model written by :func:`save_alpha_model` (the class is found in :data:`ALPHA_MODELS`)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"alpha model file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path} is not a JSON alpha model: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CorruptFileError(f"{path} is not an openmm_cgml alpha model (expected format {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(f"{path} has alpha-model format version {data.get('format_version')}, "
                               f"this openmm_cgml reads {FORMAT_VERSION}")
    return ALPHA_MODELS.create(data["model"], **data["parameters"])

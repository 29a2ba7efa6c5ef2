"""Arrhenius fits of a rate-like quantity (here the diffusion coefficient) over temperature.

ln D(T) = ln A - Ea / (R T), fitted by weighted linear least squares in (1/T, ln D).

:func:`arrhenius_study` applies the fits to D(T) of several models (an all-atom reference and CG models) and
species, and tests each model's alpha(T) = D_model / D_ref, fitted at training temperatures, at held-out ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..exceptions import ConfigurationError, TrajectoryError
from ..units import KB

__all__ = ["GAS_CONSTANT", "ArrheniusFit", "fit_arrhenius", "ArrheniusStudy", "SpeciesArrhenius", "ReferenceComparison",
           "HeldOutPrediction", "arrhenius_study", "arrhenius_plot", "CHI2_P_VALUE_FLAG"]

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


# --------------------------------------------------------------------------------------
# The Arrhenius study of D(T) over models and species
# --------------------------------------------------------------------------------------
#: Below this p-value of its chi-squared a weighted Arrhenius fit is flagged: ln D is not linear in 1/T within the
#: errors of D (or the errors are too small).
CHI2_P_VALUE_FLAG = 0.01


@dataclass(frozen=True)
class HeldOutPrediction:
    """D of the reference predicted from a model's D at a held-out temperature: D_ref = D_model / alpha(T), with
    alpha(T) from the Arrhenius fits of both over the training temperatures.

    Attributes
    ----------
    temperature : float, K
    alpha, alpha_err : float
        alpha(T) = D_model / D_ref of the training fits, and its standard error from their covariances.
    extrapolated : bool
        Whether ``temperature`` lies outside the training temperatures of the two fits.
    d_model, d_model_err : float, nm^2/ps
        The model's measured D there.
    d_predicted, d_predicted_err : float, nm^2/ps
        The predicted D of the reference, d_model / alpha (independent errors propagated to first order).
    d_reference, d_reference_err : float, nm^2/ps
        The reference's measured D there (NaN when it was not measured).
    relative_error, relative_error_err : float
        (d_predicted - d_reference) / d_reference and its standard error (NaN without a measurement).
    """

    temperature: float
    alpha: float
    alpha_err: float
    extrapolated: bool
    d_model: float
    d_model_err: float
    d_predicted: float
    d_predicted_err: float
    d_reference: float
    d_reference_err: float
    relative_error: float
    relative_error_err: float


@dataclass(frozen=True)
class ReferenceComparison:
    """A model's Arrhenius law for one species against the reference's.

    Attributes
    ----------
    ea_deviation, ea_deviation_err : float
        abs(Ea_model - Ea_ref) / Ea_ref of the fits over all temperatures, and its standard error (the two fits
        independent); NaN when a fit is missing or Ea_ref is not positive.
    ea_deviation_training, ea_deviation_training_err : float
        The same for the fits over the training temperatures.
    fit_model, fit_reference : ArrheniusFit or None
        The training fits behind alpha(T) (None: alpha(T) is not fitted, see ``notes``).
    held_out : tuple of HeldOutPrediction
        One per held-out temperature at which the model has a D.
    notes : tuple of str
        What could not be compared, and why.
    """

    ea_deviation: float
    ea_deviation_err: float
    ea_deviation_training: float
    ea_deviation_training_err: float
    fit_model: ArrheniusFit | None
    fit_reference: ArrheniusFit | None
    held_out: tuple[HeldOutPrediction, ...] = ()
    notes: tuple[str, ...] = ()

    def alpha(self, temperature) -> tuple[float, float]:
        """alpha(T) = D_model / D_ref of the training fits and its standard error, at temperatures in K; the same
        as :meth:`openmm_cgml.dynamics.ArrheniusAlpha.from_fits` (``fit_model``, ``fit_reference``) gives."""
        if self.fit_model is None or self.fit_reference is None:
            raise TrajectoryError(f"alpha(T) was not fitted: {'; '.join(self.notes)}")
        d_m, e_m = self.fit_model.predict(temperature)
        d_r, e_r = self.fit_reference.predict(temperature)
        alpha = d_m / d_r
        return alpha, alpha * np.hypot(e_m / d_m, e_r / d_r)

    def alpha_parameters(self) -> dict | None:
        """Constructor keywords of :class:`openmm_cgml.dynamics.ArrheniusAlpha` for this alpha(T) (as
        ``ArrheniusAlpha.from_fits`` builds it; ``ALPHA_MODELS.create("arrhenius", **parameters)``), or None."""
        if self.fit_model is None or self.fit_reference is None:
            return None
        fm, fr = self.fit_model, self.fit_reference
        temps = np.concatenate([fm.temperatures, fr.temperatures])
        return {"ln_prefactor_cg": fm.ln_prefactor, "activation_energy_cg": fm.activation_energy,
                "ln_prefactor_aa": fr.ln_prefactor, "activation_energy_aa": fr.activation_energy,
                "covariance_cg": fm.covariance.tolist(), "covariance_aa": fr.covariance.tolist(),
                "temperature_range": [float(temps.min()), float(temps.max())]}


@dataclass(frozen=True)
class SpeciesArrhenius:
    """D(T) of one species in one model and its Arrhenius fits.

    Attributes
    ----------
    model, species : str
    temperatures : ndarray (n,), K, increasing
    D, D_err : ndarray (n,), nm^2/ps (D_err NaN where none was given)
    converged : ndarray (n,) of bool
        Whether each D is from a diffusive MSD.
    fit_all, fit_training : ArrheniusFit or None
        Fits over all temperatures and over the training temperatures (None: skipped, see ``notes``).
    vs_reference : ReferenceComparison or None
        For a model other than the reference, the comparison with the reference's fits (None for the reference,
        or when the reference has no such species).
    notes : tuple of str
        Flags: D not converged, fits skipped or unweighted, chi-squared too large, missing temperatures.
    """

    model: str
    species: str
    temperatures: np.ndarray
    D: np.ndarray
    D_err: np.ndarray
    converged: np.ndarray
    fit_all: ArrheniusFit | None
    fit_training: ArrheniusFit | None
    vs_reference: ReferenceComparison | None = None
    notes: tuple[str, ...] = ()

    def point(self, temperature: float) -> tuple[float, float] | None:
        """(D, D_err) at ``temperature`` (K), or None when not measured there."""
        hit = np.flatnonzero(np.isclose(self.temperatures, temperature, rtol=0.0, atol=_T_ATOL))
        return None if hit.size == 0 else (float(self.D[hit[0]]), float(self.D_err[hit[0]]))


@dataclass(frozen=True)
class ArrheniusStudy:
    """Result of :func:`arrhenius_study`.

    ``results[model][species]`` is a :class:`SpeciesArrhenius` (the reference first); ``flags`` lists every note
    of every entry as ``"model/species: note"``.
    """

    reference: str
    training: tuple[float, ...]
    held_out: tuple[float, ...]
    results: dict[str, dict[str, SpeciesArrhenius]]

    @property
    def models(self) -> list[str]:
        return list(self.results)

    @property
    def species(self) -> list[str]:
        """Every species, in order of first appearance (the reference's first)."""
        return list(dict.fromkeys(s for per in self.results.values() for s in per))

    @property
    def flags(self) -> tuple[str, ...]:
        out = []
        for model, per in self.results.items():
            for species, entry in per.items():
                notes = entry.notes + (entry.vs_reference.notes if entry.vs_reference else ())
                out += [f"{model}/{species}: {n}" for n in notes]
        return tuple(out)

    def to_data(self) -> dict:
        """The study as JSON-ready plain data (NaN written as None): ``reference``, ``training_K``,
        ``held_out_K``, ``models``, ``species``, ``flags`` and ``results[model][species]`` with
        ``temperatures_K``, ``D_nm2_per_ps``, ``D_err_nm2_per_ps``, ``converged``, ``fit_all`` and
        ``fit_training`` (``Ea_kJ_per_mol``, ``Ea_err_kJ_per_mol``, ``ln_A``, ``ln_A_err`` (A in nm^2/ps),
        ``covariance`` of (ln A, Ea), ``temperatures_K``, ``chi2_per_dof``, ``chi2_p_value``, ``weighted``; None
        when skipped), ``notes`` and, for the models compared with the reference, ``vs_reference`` (``ea_deviation``,
        ``ea_deviation_err``, ``ea_deviation_training``, ``ea_deviation_training_err``, ``alpha_model`` (the
        ArrheniusAlpha constructor keywords or None), ``held_out`` (one dict per :class:`HeldOutPrediction`
        field, ``temperature`` as ``temperature_K``) and ``notes``)."""
        results = {}
        for model, per in self.results.items():
            results[model] = {}
            for species, e in per.items():
                entry = {"temperatures_K": e.temperatures.tolist(), "D_nm2_per_ps": e.D.tolist(),
                         "D_err_nm2_per_ps": e.D_err.tolist(), "converged": [bool(c) for c in e.converged],
                         "fit_all": _fit_data(e.fit_all), "fit_training": _fit_data(e.fit_training),
                         "notes": list(e.notes)}
                c = e.vs_reference
                if c is not None:
                    entry["vs_reference"] = {
                        "ea_deviation": c.ea_deviation, "ea_deviation_err": c.ea_deviation_err,
                        "ea_deviation_training": c.ea_deviation_training,
                        "ea_deviation_training_err": c.ea_deviation_training_err,
                        "alpha_model": c.alpha_parameters(),
                        "held_out": [{("temperature_K" if k == "temperature" else k): v for k, v in p.__dict__.items()}
                                     for p in c.held_out],
                        "notes": list(c.notes)}
                results[model][species] = entry
        return _plain({"reference": self.reference, "training_K": list(self.training),
                       "held_out_K": list(self.held_out), "models": self.models, "species": self.species,
                       "flags": list(self.flags), "results": results})

    def table_markdown(self) -> str:
        """One row per model and species: Ea (all temperatures and training temperatures), the deviation of Ea from
        the reference's, the held-out predictions of D_ref and the notes."""
        ref = self.reference
        head = (f"| model | species | Ea, all T (kJ/mol) | Ea, training T (kJ/mol) | abs(Ea - Ea_{ref}) / Ea_{ref} "
                f"| held out: alpha(T), D_{ref} predicted vs measured (nm^2/ps), relative error | notes |\n"
                "|---|---|---|---|---|---|---|\n")
        lines = []
        for model, per in self.results.items():
            for species, e in per.items():
                c = e.vs_reference
                dev, held = "", ""
                if c is not None:
                    dev = _pm(c.ea_deviation, c.ea_deviation_err)
                    held = "<br>".join(
                        f"{p.temperature:g} K{' (extrapolated)' if p.extrapolated else ''}: alpha "
                        f"{_pm(p.alpha, p.alpha_err)}, {_pm(p.d_predicted, p.d_predicted_err)} vs "
                        f"{_pm(p.d_reference, p.d_reference_err) or 'not measured'}"
                        + (f" ({_pm(100 * p.relative_error, 100 * p.relative_error_err)} %)"
                           if np.isfinite(p.relative_error) else "")
                        for p in c.held_out)
                notes = e.notes + (c.notes if c is not None else ())
                lines.append(f"| {model} | {species} | {_ea(e.fit_all)} | {_ea(e.fit_training)} | {dev} | {held} | "
                             f"{'; '.join(notes).replace('|', '/')} |")
        return head + "\n".join(lines) + "\n"


#: Temperatures (K) closer than this are the same temperature.
_T_ATOL = 1e-6


def _pm(x: float, e: float) -> str:
    if not np.isfinite(x):
        return ""
    return f"{x:.4g} ± {e:.2g}" if np.isfinite(e) else f"{x:.4g}"


def _ea(fit: ArrheniusFit | None) -> str:
    return "skipped" if fit is None else _pm(fit.activation_energy, fit.activation_energy_err)


def _plain(x):
    """``x`` with NumPy scalars and arrays made Python data and non-finite floats None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _chi2_p_value(fit: ArrheniusFit) -> float:
    from scipy.stats import chi2

    dof = fit.temperatures.size - 2
    if not np.isfinite(fit.chi2_per_dof) or dof <= 0:
        return float("nan")
    return float(chi2.sf(fit.chi2_per_dof * dof, dof))


def _fit_data(fit: ArrheniusFit | None) -> dict | None:
    if fit is None:
        return None
    return {"Ea_kJ_per_mol": fit.activation_energy, "Ea_err_kJ_per_mol": fit.activation_energy_err,
            "ln_A": fit.ln_prefactor, "ln_A_err": fit.ln_prefactor_err, "covariance": fit.covariance.tolist(),
            "temperatures_K": fit.temperatures.tolist(), "chi2_per_dof": fit.chi2_per_dof,
            "chi2_p_value": _chi2_p_value(fit), "weighted": bool(np.all(np.isfinite(fit.errors)))}


def _value(record, *keys):
    for key in keys:
        if record.get(key) is not None:
            return float(record[key])
    return float("nan")


def _read_point(record, where: str) -> tuple[float, float, bool, str]:
    """(D, D_err, converged, reason) of one record; D is NaN for a record without D (a check that could not fit)."""
    if not isinstance(record, Mapping):  # a DiffusionResult
        record = {"D": record.D, "D_err": record.D_err, "converged": record.converged, "reason": record.reason}
    d = _value(record, "D", "D_nm2_per_ps")
    present = record.get("D", record.get("D_nm2_per_ps")) is not None
    if present and not (np.isfinite(d) and d > 0):
        raise TrajectoryError(f"D of {where} is {d}: an Arrhenius fit needs positive, finite D (nm^2/ps)")
    return d, _value(record, "D_err", "D_err_nm2_per_ps"), bool(record.get("converged", True)), \
        str(record.get("reason") or "")


def _temperature(value) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"temperatures must be numbers (K), got {value!r}") from exc
    if not (np.isfinite(t) and t > 0):
        raise ConfigurationError(f"temperatures must be positive (K), got {value!r}")
    return round(t, 6)


def _fit(temps: np.ndarray, d: np.ndarray, err: np.ndarray, what: str) -> tuple[ArrheniusFit | None, list[str]]:
    """The Arrhenius fit of one series (weighted when every D has an error), or None and the reason."""
    if temps.size < 2:
        return None, [f"{what} skipped: fewer than 2 temperatures ({', '.join(f'{t:g} K' for t in temps) or 'none'})"]
    notes = []
    weighted = bool(np.all(np.isfinite(err) & (err > 0)))
    if not weighted:
        notes.append(f"{what} unweighted: no positive D error at "
                     f"{', '.join(f'{t:g} K' for t in temps[~(np.isfinite(err) & (err > 0))])}")
    try:
        fit = fit_arrhenius(temps, d, err if weighted else None)
    except TrajectoryError as exc:
        return None, notes + [f"{what} skipped: {exc}"]
    p = _chi2_p_value(fit)
    if p < CHI2_P_VALUE_FLAG:
        notes.append(f"{what}: chi2/dof = {fit.chi2_per_dof:.3g} over {temps.size} temperatures (p = {p:.2g}): "
                     "ln D is not linear in 1/T within the errors of D")
    return fit, notes


def _deviation(fit_model: ArrheniusFit | None, fit_ref: ArrheniusFit | None) -> tuple[float, float]:
    """abs(Ea_model - Ea_ref) / Ea_ref and its standard error (independent fits), NaN without both fits or with
    Ea_ref <= 0."""
    if fit_model is None or fit_ref is None or not fit_ref.activation_energy > 0:
        return float("nan"), float("nan")
    em, sm = fit_model.activation_energy, fit_model.activation_energy_err
    er, sr = fit_ref.activation_energy, fit_ref.activation_energy_err
    return abs(em - er) / er, float(np.hypot(sm / er, em * sr / er**2))


def _compare(entry: SpeciesArrhenius, ref: SpeciesArrhenius, held_out: tuple[float, ...]) -> ReferenceComparison:
    notes = []
    dev = _deviation(entry.fit_all, ref.fit_all)
    dev_training = _deviation(entry.fit_training, ref.fit_training)
    for name, fit, ref_fit in (("all", entry.fit_all, ref.fit_all), ("training", entry.fit_training,
                                                                       ref.fit_training)):
        if fit is not None and ref_fit is not None and not ref_fit.activation_energy > 0:
            notes.append(f"no Ea deviation ({name} temperatures): Ea of the reference is "
                         f"{ref_fit.activation_energy:.3g} kJ/mol, not positive")
    if entry.fit_training is None or ref.fit_training is None:
        side = "the model's" if entry.fit_training is None else "the reference's"
        notes.append(f"alpha(T) not fitted: {side} training fit was skipped")
        return ReferenceComparison(*dev, *dev_training, None, None, (), tuple(notes))
    comparison = ReferenceComparison(*dev, *dev_training, entry.fit_training, ref.fit_training)
    lo = min(entry.fit_training.temperatures.min(), ref.fit_training.temperatures.min())
    hi = max(entry.fit_training.temperatures.max(), ref.fit_training.temperatures.max())
    predictions = []
    for t in held_out:
        measured = entry.point(t)
        if measured is None:
            notes.append(f"no D of the model at the held-out {t:g} K: no prediction there")
            continue
        d_m, e_m = measured
        alpha, alpha_err = (float(v) for v in comparison.alpha(t))
        pred = d_m / alpha
        pred_err = pred * float(np.hypot(e_m / d_m, alpha_err / alpha))
        d_r, e_r = ref.point(t) or (float("nan"), float("nan"))
        rel = pred / d_r - 1.0
        rel_err = pred / d_r * float(np.hypot(pred_err / pred, e_r / d_r))
        if np.isnan(d_r):
            notes.append(f"no D of the reference at the held-out {t:g} K: the prediction there is not checked")
        predictions.append(HeldOutPrediction(t, alpha, alpha_err, not lo - _T_ATOL <= t <= hi + _T_ATOL, d_m, e_m,
                                             pred, pred_err, d_r, e_r, rel, rel_err))
    return ReferenceComparison(*dev, *dev_training, entry.fit_training, ref.fit_training, tuple(predictions),
                               tuple(notes))


def arrhenius_study(diffusion, *, reference: str = "AA", training, held_out=(), models=None) -> ArrheniusStudy:
    """Arrhenius laws of D(T) for every model and species, and how well each model's alpha(T) carries the
    reference's D to temperatures held out of the fits.

    Parameters
    ----------
    diffusion : mapping
        ``{model: {species: {temperature_K: record}}}``.  A record is a mapping with the D (nm^2/ps) under ``"D"``
        or ``"D_nm2_per_ps"``, its standard error under ``"D_err"`` or ``"D_err_nm2_per_ps"`` (optional),
        ``"converged"`` (optional, default True) and ``"reason"`` (optional), as
        :func:`~openmm_cgml.analysis.compare.species_diffusion_check` writes them, or a
        :class:`~openmm_cgml.analysis.DiffusionResult` (:func:`~openmm_cgml.analysis.compare.species_diffusion`).
        A record without D (a check that could not fit) is left out, with a note.  Temperatures may be numbers
        or numeric strings (JSON keys).
    reference : str
        The model the others are compared with (the all-atom runs).
    training : sequence of float, K
        Temperatures of the fits behind alpha(T); the reference must have a D at each, for every species.
    held_out : sequence of float, K
        Temperatures at which D_ref = D_model / alpha(T) is predicted and checked against the measured D_ref.
    models : sequence of str, optional
        The models to include, in this order (the reference is always included, first); all by default.

    Notes
    -----
    For each model and species: the Arrhenius fits (:func:`fit_arrhenius`, weighted by the D errors when every
    D has one) over all its temperatures and over the training temperatures; for each model other than the
    reference and each species the reference has: abs(Ea - Ea_ref) / Ea_ref (both fits) with its propagated
    error, and at each held-out temperature alpha(T) of the training fits (as
    :meth:`openmm_cgml.dynamics.ArrheniusAlpha.from_fits` gives it), the predicted D_ref with its error, the
    measured D_ref and the relative error of the prediction.  A D that is not converged, a fit that is skipped
    (fewer than 2 temperatures) or unweighted, a weighted fit whose chi-squared is improbable (p below
    :data:`CHI2_P_VALUE_FLAG`) and missing temperatures are noted (:attr:`ArrheniusStudy.flags`).

    Raises
    ------
    ConfigurationError
        If ``reference`` or a model of ``models`` is not in ``diffusion``, a held-out temperature is also a
        training temperature, or the reference has no D at a training temperature.
    TrajectoryError
        If a D is not positive and finite.
    """
    if not isinstance(diffusion, Mapping) or reference not in diffusion:
        known = sorted(diffusion) if isinstance(diffusion, Mapping) else type(diffusion).__name__
        raise ConfigurationError(f"the reference model {reference!r} is not in the diffusion data (models: {known})")
    training_t = tuple(sorted({_temperature(t) for t in training}))
    held_t = tuple(sorted({_temperature(t) for t in held_out}))
    both = sorted(set(training_t) & set(held_t))
    if both:
        raise ConfigurationError(f"held-out temperature(s) {both} K are also training temperatures: a held-out "
                                 "temperature must be left out of the fits")
    names = list(diffusion) if models is None else list(models)
    unknown = [m for m in names if m not in diffusion]
    if unknown:
        raise ConfigurationError(f"models {unknown} are not in the diffusion data (models: {sorted(diffusion)})")
    names = [reference] + [m for m in dict.fromkeys(names) if m != reference]

    results: dict[str, dict[str, SpeciesArrhenius]] = {}
    for model in names:
        results[model] = {}
        for species, series in diffusion[model].items():
            results[model][str(species)] = _series(model, str(species), series, training_t,
                                                   require_training=model == reference)
    ref = results[reference]
    for model in names[1:]:
        for species, entry in results[model].items():
            if species not in ref:
                results[model][species] = replace(entry, notes=entry.notes + (
                    f"not compared: the reference {reference!r} has no species {species!r}",))
            else:
                results[model][species] = replace(entry, vs_reference=_compare(entry, ref[species], held_t))
    return ArrheniusStudy(reference, training_t, held_t, results)


def _series(model: str, species: str, series, training: tuple[float, ...], *,
            require_training: bool) -> SpeciesArrhenius:
    """One model's D(T) of one species, its fits and notes."""
    points, notes = {}, []
    for key, record in series.items():
        t = _temperature(key)
        if t in points:
            raise ConfigurationError(f"{model}/{species}: temperature {t:g} K is given twice")
        point = _read_point(record, f"{model}/{species} at {t:g} K")
        if np.isnan(point[0]):
            notes.append(f"no D at {t:g} K, left out ({point[3] or 'no D in the record'})")
            continue
        points[t] = point
        if not point[2]:
            notes.append(f"D at {t:g} K is not converged ({point[3] or 'not from a diffusive regime'})")
    missing = [t for t in training if t not in points]
    if missing and require_training:
        raise ConfigurationError(f"the reference {model!r} has no D of {species!r} at training temperature(s) "
                                 f"{', '.join(f'{t:g} K' for t in missing)}"
                                 + (f" ({'; '.join(notes)})" if notes else ""))
    if missing:
        notes.append(f"no D at training temperature(s) {', '.join(f'{t:g} K' for t in missing)}")
    temps = np.array(sorted(points), dtype=np.float64)
    d = np.array([points[t][0] for t in temps])
    err = np.array([points[t][1] for t in temps])
    converged = np.array([points[t][2] for t in temps], dtype=bool)
    fit_all, n_all = _fit(temps, d, err, "fit over all temperatures")
    sel = np.isin(temps, training)
    fit_training, n_training = _fit(temps[sel], d[sel], err[sel], "fit over the training temperatures")
    return SpeciesArrhenius(model, species, temps, d, err, converged, fit_all, fit_training,
                            notes=tuple(notes + n_all + n_training))


def arrhenius_plot(path, study: ArrheniusStudy) -> Path:
    """ln D against 1000 / T, one panel per species: each model's D with error bars (held-out temperatures as open
    markers) and its fit over the training temperatures (dashed outside them).  Written atomically as PNG;
    returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._io import atomic_path

    species = study.species
    n = max(len(species), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    held = np.array(study.held_out)
    for ax, sp in zip(axes.flat, species):
        for k, (model, per) in enumerate(study.results.items()):
            e = per.get(sp)
            if e is None or e.temperatures.size == 0:
                continue
            color = f"C{k % 10}"
            x, y = 1000.0 / e.temperatures, np.log(e.D)
            yerr = np.where(np.isfinite(e.D_err), e.D_err / e.D, 0.0)
            is_held = np.isin(e.temperatures, held)
            fit = e.fit_training
            label = model if fit is None else (f"{model}: Ea = {fit.activation_energy:.3g} ± "
                                               f"{fit.activation_energy_err:.2g} kJ/mol")
            for mask, face, lab in ((~is_held, color, label), (is_held, "none", None)):
                if mask.any():
                    ax.errorbar(x[mask], y[mask], yerr=yerr[mask], fmt="o", color=color, mfc=face, capsize=2,
                                label=lab)
            if fit is not None:
                lo, hi = fit.temperatures.min(), fit.temperatures.max()
                inside = np.linspace(lo, hi, 30)
                ax.plot(1000.0 / inside, np.log(fit.predict(inside)[0]), "-", color=color, lw=1)
                for a, b in ((e.temperatures.min(), lo), (hi, e.temperatures.max())):
                    if b > a:
                        outside = np.linspace(a, b, 20)
                        ax.plot(1000.0 / outside, np.log(fit.predict(outside)[0]), "--", color=color, lw=1)
        ax.set(title=sp, xlabel="1000 / T (1/K)", ylabel="ln D (D in nm$^2$/ps)")
        ax.legend(fontsize=7, title="lines: training fits; open: held out", title_fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path

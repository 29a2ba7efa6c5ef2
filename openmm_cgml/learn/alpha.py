"""A learned dynamic-rescaling factor: alpha predicted from force-field parameters and temperature by a network
ensemble trained on parameter sweeps (Bag et al., J. Chem. Theory Comput. 2022: rescale a structure-preserving CG
model's dynamics with an ML-predicted acceleration factor).

:class:`PredictedAlpha` is an alpha model (registered as ``predicted`` in
:data:`~openmm_cgml.dynamics.ALPHA_MODELS`), so :class:`~openmm_cgml.dynamics.TimeCorrelationReporter` and
:func:`~openmm_cgml.dynamics.load_alpha_model` use it like the others.  It predicts ln alpha (the members' mean)
with a standard deviation calibrated on held-out samples; ``alpha_err`` is alpha times that deviation.  The
parameters it is evaluated at are given (``parameters``, by the sweep's column names) or read by the model itself
from an OpenFF force field (``forcefield``: every feature's handler, SMIRKS and attribute).  A model of molecule
descriptors (:mod:`~openmm_cgml.learn.descriptors`, trained on several molecules) evaluates them itself for a
``molecule`` (a sweep's molecule block) with its force field (``forcefield`` for an OpenFF molecule, ``parameters``
the united-atom force field), or takes them as ``parameters``.  Outside the range of its training data it warns,
once per input.

:func:`train_alpha_model` fits it on :class:`~openmm_cgml.learn.data.SweepData` and evaluates it on the held-out
test samples.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..dynamics.alpha import AlphaModel
from ..exceptions import ConfigurationError
from .data import Feature, SweepData, feature_row, outside_range, split_by_sample, training_range
from .ensemble import Ensemble, train_ensemble

__all__ = ["PredictedAlpha", "train_alpha_model", "evaluate_alpha_model", "cross_validate_alpha"]

logger = logging.getLogger(__name__)


class PredictedAlpha(AlphaModel):
    """alpha(T) predicted from force-field parameters by a network ensemble (module docstring).

    Parameters
    ----------
    ensemble : dict
        :meth:`Ensemble.to_data` of networks from (features..., temperature K) to ln alpha.
    features : list of dict
        The inputs (:class:`~openmm_cgml.learn.data.Feature` data), in order.
    training_range : dict, optional
        ``{column: [min, max]}`` over the training samples (``temperature_K`` too): outside it the model warns.
    parameters : dict, optional
        The parameter values to predict at, by column, in each feature's unit.
    forcefield : str, optional
        An OpenFF force field (name or path) to read the parameter values from (features addressed by SMIRKS;
        with ``molecule``, the force field whose assigned parameters give the descriptors).
    metadata : dict, optional
        Provenance (sweeps, family, molecule, evaluation figures).
    molecule : dict, optional
        Descriptor models: the molecule to predict for (a sweep's ``molecule`` block: united-atom ``sites`` and
        ``bonds``, or OpenFF ``smiles``, with its ``density``).  ``parameters`` that do not name every descriptor
        are then the united-atom force field (:func:`~openmm_cgml.learn.descriptors.united_atom_descriptors`).
    """

    name = "predicted"

    def __init__(self, ensemble: dict, features: list, training_range: dict | None = None,
                 parameters: dict | None = None, forcefield: str | None = None, metadata: dict | None = None,
                 molecule: dict | None = None):
        self._ensemble_data = ensemble
        self._ensemble = Ensemble.from_data(ensemble)
        self.features = [f if isinstance(f, Feature) else Feature.from_data(f) for f in features]
        if self._ensemble.x_mean.size != len(self.features) + 1:
            raise ConfigurationError(f"the ensemble takes {self._ensemble.x_mean.size} inputs, the model names "
                                     f"{len(self.features)} features and the temperature")
        self.training_range = {k: [float(a), float(b)] for k, (a, b) in (training_range or {}).items()}
        self.forcefield = forcefield
        self.metadata = dict(metadata or {})
        self.molecule = molecule
        columns = {f.column for f in self.features}
        descriptors = any(f.kind == "descriptor" for f in self.features)
        if molecule is not None and not descriptors:
            raise ConfigurationError("molecule= is for a model of molecule descriptors; this one takes one "
                                     "molecule's parameters (give parameters= or forcefield=)")
        if descriptors and molecule is not None and not (parameters is not None and columns <= set(parameters)):
            from .descriptors import molecule_descriptors

            parameters = molecule_descriptors(molecule, parameters=parameters, forcefield=forcefield)
        elif descriptors and parameters is None and forcefield is not None:
            raise ConfigurationError("this model takes molecule descriptors: give molecule= (the molecule the "
                                     "force field is applied to) with forcefield=")
        self.parameters = None if parameters is None else {k: float(v) for k, v in parameters.items()
                                                           if k in columns}
        if self.parameters is None and forcefield is not None:
            self.parameters = self._read_forcefield(forcefield)
        if self.parameters is not None:
            missing = [f.column for f in self.features if f.column not in self.parameters]
            if missing:
                raise ConfigurationError(f"parameters: missing {missing}; the model takes "
                                         f"{[f.column for f in self.features]}")
        self._warned: set[str] = set()

    def _read_forcefield(self, forcefield: str) -> dict[str, float]:
        from ..reference.liquid import forcefield_parameter_value, load_forcefield

        unaddressed = [f.column for f in self.features if not f.smirks]
        if unaddressed:
            raise ConfigurationError(f"the features {unaddressed} are not addressed by SMIRKS (a united-atom sweep): "
                                     "give their values as parameters=")
        ff = load_forcefield(forcefield)
        return {f.column: forcefield_parameter_value(ff, f.handler, f.smirks, f.attribute, f.unit)
                for f in self.features}

    def with_parameters(self, parameters: dict | None = None, forcefield: str | None = None,
                        molecule: dict | None = None) -> PredictedAlpha:
        """The same networks, evaluated at other parameters (or those of another force field, or, for a descriptor
        model, another molecule)."""
        return PredictedAlpha(self._ensemble_data, [f.to_data() for f in self.features], self.training_range,
                              parameters, forcefield, self.metadata, molecule)

    def _inputs(self, temperature) -> np.ndarray:
        if self.parameters is None:
            raise ConfigurationError("this predicted alpha model has no parameters to evaluate: give parameters= "
                                     "(by column) or forcefield= (an OpenFF force field), e.g. with_parameters()")
        return feature_row(self.features, self.parameters, temperature, self.training_range, what="predicted alpha",
                           warned=self._warned)

    def outside_training_range(self, temperature) -> list[str]:
        """The inputs (columns) outside the training range at ``temperature``."""
        return outside_range(self.features, self.training_range, self._inputs(temperature)[0])

    def ln_alpha(self, temperature) -> tuple[float, float]:
        """ln alpha and its standard deviation (calibrated)."""
        mean, sd = self._ensemble.predict(self._inputs(temperature))
        return float(mean[0, 0]), float(sd[0, 0])

    def alpha(self, temperature) -> float:
        return math.exp(self.ln_alpha(temperature)[0])

    def alpha_err(self, temperature) -> float:
        mean, sd = self.ln_alpha(temperature)
        return math.exp(mean) * sd

    def to_data(self) -> dict[str, Any]:
        return {"ensemble": self._ensemble_data, "features": [f.to_data() for f in self.features],
                "training_range": self.training_range, "parameters": self.parameters, "forcefield": self.forcefield,
                "metadata": self.metadata, "molecule": self.molecule}

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        # one linear network: ln alpha = 0.8 + 0.1 * (bond_k - 1) / 0.5
        layer = {"weight": [[0.1, 0.0]], "bias": [0.8]}
        return {"ensemble": {"members": [[layer]], "x_mean": [1.0, 300.0], "x_scale": [0.5, 1.0], "y_mean": [0.0],
                             "y_scale": [1.0], "extra_variance": [0.01]},
                "features": [{"column": "bond_k", "handler": "Bonds", "attribute": "k", "unit": "kJ/mol/nm**2"}],
                "training_range": {"bond_k": [0.5, 1.5], "temperature_K": [280.0, 320.0]},
                "parameters": {"bond_k": 1.2}}

    def __repr__(self) -> str:
        return f"PredictedAlpha({len(self.features)} features, {len(self._ensemble.members)} networks)"


def evaluate_alpha_model(model: PredictedAlpha, data: SweepData, rows) -> dict[str, Any]:
    """Predicted against measured alpha on ``rows`` of ``data``: the median relative error, how often the measured
    alpha lies inside the predicted 68 % and 95 % intervals, and the same error for a constant alpha (the training
    mean: what learning has to beat)."""
    x = data.inputs(rows)
    measured = data.frame["alpha"].to_numpy(np.float64)[rows]
    mean, sd = model._ensemble.predict(x)
    return _alpha_figures(measured, np.exp(mean[:, 0]), sd[:, 0])


def _alpha_figures(measured, predicted, sd_ln) -> dict[str, Any]:
    measured, predicted, sd = (np.asarray(a, np.float64) for a in (measured, predicted, sd_ln))
    z = (np.log(measured) - np.log(predicted)) / np.where(sd > 0, sd, np.inf)
    rel = np.abs(predicted / measured - 1)
    return {"n": int(measured.size), "measured": measured.tolist(), "predicted": predicted.tolist(),
            "predicted_sd_ln": sd.tolist(), "median_relative_error": float(np.median(rel)),
            "max_relative_error": float(rel.max()), "within_68": float(np.mean(np.abs(z) <= 1.0)),
            "within_95": float(np.mean(np.abs(z) <= 1.96))}


def train_alpha_model(data: SweepData, *, n_members: int = 5, hidden=(32, 32), epochs: int = 3000,
                      patience: int = 200, learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                      fractions=(0.7, 0.15, 0.15), seed: int = 0,
                      split: dict | None = None) -> tuple[PredictedAlpha, dict[str, Any]]:
    """Train a :class:`PredictedAlpha` on ``data`` (split by sample, or by the given ``split``; the ensemble's
    spread calibrated on the validation samples) and evaluate it on the test samples.  Returns the model (no
    parameters set: use :meth:`PredictedAlpha.with_parameters`) and the evaluation (train/validation/test figures,
    baseline)."""
    split = split_by_sample(data, fractions, seed) if split is None else split
    x = data.inputs()
    y = np.log(data.frame["alpha"].to_numpy(np.float64))
    tr, va, te = split["train"], split["validation"], split["test"]
    ens = train_ensemble(x[tr], y[tr], x[va], y[va], n_members=n_members, hidden=tuple(hidden), epochs=epochs,
                         patience=patience, learning_rate=learning_rate, weight_decay=weight_decay, seed=seed)
    ens.calibrate(x[va], y[va])
    ranges = training_range(data.features, x[tr])
    metadata = {**data.provenance(), "target": "ln alpha",
                "n_train": int(tr.size), "n_validation": int(va.size), "n_test": int(te.size),
                "calibration_extra_sd_ln": float(np.sqrt(ens.extra_variance[0])), "training_history": ens.history}
    model = PredictedAlpha(ens.to_data(), [f.to_data() for f in data.features], ranges, metadata=metadata)
    evaluation = {name: evaluate_alpha_model(model, data, rows) for name, rows in split.items()}
    const = float(np.exp(y[tr].mean()))
    measured = np.exp(y[te])
    evaluation["constant_baseline"] = {"alpha": const,
                                       "median_relative_error": float(np.median(np.abs(const / measured - 1)))}
    rel_err = data.frame["alpha_err"].to_numpy(np.float64) / data.frame["alpha"].to_numpy(np.float64)
    evaluation["measurement"] = {"median_relative_error_of_measured_alpha": float(np.nanmedian(rel_err[te]))}
    if "holdout" in split:  # the molecules left out of training: the same figures
        ho = split["holdout"]
        evaluation["constant_baseline_holdout"] = {
            "alpha": const, "median_relative_error": float(np.median(np.abs(const / np.exp(y[ho]) - 1)))}
        evaluation["measurement"]["median_relative_error_of_measured_alpha_holdout"] = float(np.nanmedian(rel_err[ho]))
    evaluation["sample_ids"] = {k: data.frame["sample_id"].iloc[v].tolist() for k, v in split.items()}
    for name in ("test", "holdout"):
        if name in evaluation:
            model.metadata[f"evaluation_{name}"] = {k: evaluation[name][k] for k in ("n", "median_relative_error",
                                                                                     "within_68", "within_95")}
    return model, evaluation


def cross_validate_alpha(data: SweepData, folds: list[dict], **training) -> dict[str, Any]:
    """Out-of-fold evaluation (:func:`~openmm_cgml.learn.data.cross_validation_folds`): one ensemble trained per
    fold (``training``: :func:`train_alpha_model`'s settings), each sample predicted by the fold that held it out.
    Returns the figures of :func:`evaluate_alpha_model` over every sample, the constant-alpha baseline (each fold's
    training mean) and the measured alphas' own relative error, with the per-sample predictions and folds."""
    measured, predicted, sd, constant, ids, fold_of = [], [], [], [], [], []
    alpha = data.frame["alpha"].to_numpy(np.float64)
    for f, split in enumerate(folds):
        _, evaluation = train_alpha_model(data, split=split, **training)
        test = evaluation["test"]
        measured += test["measured"]
        predicted += test["predicted"]
        sd += test["predicted_sd_ln"]
        constant += [float(np.exp(np.log(alpha[split["train"]]).mean()))] * test["n"]
        ids += data.frame["sample_id"].iloc[split["test"]].tolist()
        fold_of += [f] * test["n"]
    out = _alpha_figures(measured, predicted, sd)
    const_rel = np.abs(np.array(constant) / np.array(measured) - 1)
    rows = np.concatenate([s["test"] for s in folds])
    rel_err = (data.frame["alpha_err"].to_numpy(np.float64) / alpha)[rows]
    out.update({"folds": len(folds), "sample_ids": ids, "fold": fold_of,
                "constant_baseline_median_relative_error": float(np.median(const_rel)),
                "median_relative_error_of_measured_alpha": float(np.nanmedian(rel_err))})
    return out

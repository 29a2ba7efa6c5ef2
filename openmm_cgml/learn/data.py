"""Sweep directories as training data: the feature definition (which force-field parameters, by handler, SMIRKS or
site, attribute and unit) and one row per finished sample (its parameter values, temperature and results)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, DatasetError

__all__ = ["Feature", "SweepData", "feature_row", "input_columns", "load_sweeps", "outside_range", "split_by_sample",
           "training_range"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    """One input of a learned model: a force-field parameter (an index column) and where it lives."""

    column: str
    handler: str
    attribute: str
    unit: str
    smirks: str | None = None
    site: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"column": self.column, "handler": self.handler, "attribute": self.attribute, "unit": self.unit,
                "smirks": self.smirks, "site": self.site}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Feature:
        try:
            return cls(**{k: data.get(k) for k in ("column", "handler", "attribute", "unit", "smirks", "site")})
        except TypeError as exc:
            raise ConfigurationError(f"not a feature definition: {data!r} ({exc})") from exc


@dataclass
class SweepData:
    """The finished samples of one or more sweeps of the same family, molecule and parameters.

    ``frame`` (a pandas DataFrame) has the index's columns plus ``sweep`` (its directory) and ``point`` (the design
    point, shared by a point's temperatures: the unit of the train/validation/test split)."""

    family: str
    molecule: dict
    features: list[Feature]
    frame: Any
    sources: list[str]
    excluded: dict[str, int]

    def inputs(self, rows=None) -> np.ndarray:
        """(n, n_features + 1): the parameter values and the temperature (K), columns :func:`input_columns`."""
        f = self.frame if rows is None else self.frame.iloc[rows]
        return np.column_stack([f[c].to_numpy(np.float64) for c in input_columns(self.features)])


def input_columns(features) -> list[str]:
    """The names of a learned model's inputs: the features' columns, then ``temperature_K``."""
    return [*(f.column for f in features), "temperature_K"]


def training_range(features, x: np.ndarray) -> dict[str, list[float]]:
    """``{column: [min, max]}`` of the inputs ``x`` (rows, :func:`input_columns`) a model was trained on."""
    return {n: [float(x[:, i].min()), float(x[:, i].max())] for i, n in enumerate(input_columns(features))}


def outside_range(features, ranges: dict, row) -> list[str]:
    """The input columns of ``row`` (one row of inputs) outside ``ranges`` (:func:`training_range`)."""
    return [n for n, v in zip(input_columns(features), row) if n in ranges and not ranges[n][0] <= v <= ranges[n][1]]


def feature_row(features, parameters: dict, temperature, ranges: dict, *, what: str, warned: set | None = None):
    """One row of inputs (1, n_features + 1) from ``parameters`` (by column) and ``temperature``, checked: every
    feature given, the temperature positive; inputs outside ``ranges`` are logged as an extrapolation of ``what``
    (once per column if a ``warned`` set is kept, else every time)."""
    from ..units import to_md

    missing = [f.column for f in features if f.column not in parameters]
    if missing:
        raise ConfigurationError(f"parameters: missing {missing}; the model takes {[f.column for f in features]}")
    t = to_md(temperature, "temperature", name="temperature")
    if not t > 0:
        raise ConfigurationError(f"temperature must be positive, got {t} K")
    row = np.array([[*(float(parameters[f.column]) for f in features), t]])
    for column in outside_range(features, ranges, row[0]):
        if warned is None or column not in warned:
            if warned is not None:
                warned.add(column)
            lo, hi = ranges[column]
            value = row[0][input_columns(features).index(column)]
            logger.warning("%s: %s = %.6g is outside the training range [%.6g, %.6g]: an extrapolation", what, column,
                           value, lo, hi)
    return row


def _sweep_definition(directory: Path):
    import yaml

    from ..sweep import SweepConfig

    path = directory / "sweep.yaml"
    if not path.exists():
        raise DatasetError(f"{directory} is not a sweep directory: it has no sweep.yaml (run `cgml sweep` first)")
    return SweepConfig.from_data(yaml.safe_load(path.read_text()), source=str(path))


def load_sweeps(directories, *, require_converged: bool = True) -> SweepData:
    """Read the index of each sweep directory and keep the finished samples with a positive alpha (and, with
    ``require_converged``, both D diffusive).  The sweeps must share family, molecule and varied parameters.

    Raises
    ------
    DatasetError
        A directory that is not a sweep, or no usable sample.
    ConfigurationError
        Sweeps that vary different parameters or simulate different molecules.
    """
    import pandas as pd

    directories = [Path(d) for d in directories]
    if not directories:
        raise ConfigurationError("give at least one sweep directory")
    frames, first, excluded = [], None, {"not done": 0, "no alpha": 0, "not converged": 0}
    for directory in directories:
        config = _sweep_definition(directory)
        features = [Feature(p.column(), p.handler, p.attribute, p.unit, p.smirks, p.site) for p in config.parameters]
        key = (config.family, config.molecule_model().to_data(), [f.to_data() for f in features])
        if first is None:
            first = key
        elif key != first:
            raise ConfigurationError(f"{directory}: its family, molecule or varied parameters differ from "
                                     f"{directories[0]}'s; learn from sweeps of one definition")
        index = directory / "index.csv"
        if not index.exists():
            raise DatasetError(f"{directory} has no index.csv: the sweep has not run")
        table = pd.read_csv(index)
        n = len(table)
        done = table[table["status"] == "done"].copy()
        excluded["not done"] += n - len(done)
        alpha = pd.to_numeric(done.get("alpha"), errors="coerce")
        ok = np.isfinite(alpha) & (alpha > 0)
        excluded["no alpha"] += int((~ok).sum())
        done = done[ok]
        if require_converged:
            conv = done["alpha_converged"].astype(str).str.lower() == "true"
            excluded["not converged"] += int((~conv).sum())
            done = done[conv]
        done["sweep"] = str(directory)
        done["point"] = done["sample_id"].str.split("-").str[0]
        frames.append(done)
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DatasetError(f"no usable sample in {', '.join(map(str, directories))} (excluded: {excluded})")
    if any(excluded.values()):
        logger.info("samples left out: %s", excluded)
    family, molecule, feats = first
    return SweepData(family, molecule, [Feature.from_data(f) for f in feats], frame, [str(d) for d in directories],
                     excluded)


def split_by_sample(data: SweepData, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of the train, validation and test sets, split by design point (a point's temperatures stay
    together), seeded; each set gets at least one point."""
    groups = (data.frame["sweep"] + "/" + data.frame["point"]).to_numpy()
    names = np.unique(groups)
    if names.size < 3:
        raise DatasetError(f"need at least 3 samples to split into train, validation and test, got {names.size}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigurationError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(names)
    n_val = max(1, int(round(fractions[1] * names.size)))
    n_test = max(1, int(round(fractions[2] * names.size)))
    sets = {"validation": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    if sets["train"].size < 2:
        raise DatasetError(f"{names.size} samples leave fewer than 2 for training")
    return {k: np.flatnonzero(np.isin(groups, v)) for k, v in sets.items()}

"""Sweep directories as training data: the feature definition (which force-field parameters, by handler, SMIRKS or
site, attribute and unit) and one row per finished sample (its parameter values, temperature and results)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, DatasetError

__all__ = ["FEATURE_KINDS", "Feature", "SweepData", "feature_row", "input_columns", "load_sweeps", "outside_range", "split_by_sample",
           "cross_validation_folds",
           "training_range"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    """One input of a learned model: a force-field parameter (an index column; ``kind="parameter"``) and where
    it lives, or a molecule descriptor (``kind="descriptor"``, :mod:`openmm_cgml.learn.descriptors`)."""

    column: str
    handler: str
    attribute: str
    unit: str
    smirks: str | None = None
    site: str | None = None
    kind: str = "parameter"

    def to_data(self) -> dict[str, Any]:
        return {"column": self.column, "handler": self.handler, "attribute": self.attribute, "unit": self.unit,
                "smirks": self.smirks, "site": self.site, "kind": self.kind}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Feature:
        try:
            feature = cls(**{k: data.get(k) for k in ("column", "handler", "attribute", "unit", "smirks", "site")},
                          kind=data.get("kind") or "parameter")
        except (TypeError, AttributeError) as exc:
            raise ConfigurationError(f"not a feature definition: {data!r} ({exc})") from exc
        if feature.kind not in FEATURE_KINDS:
            raise ConfigurationError(f"feature {feature.column!r}: kind must be one of {FEATURE_KINDS}, got "
                                     f"{feature.kind!r}")
        return feature


#: What a learned model's inputs are: the sweep's varied parameters (one molecule) or molecule descriptors
#: (several molecules, :mod:`openmm_cgml.learn.descriptors`).
FEATURE_KINDS = ("parameter", "descriptor")


@dataclass
class SweepData:
    """The finished samples of one or more sweeps: of one family, molecule and parameter list (parameter
    features), or of one family and any molecules (descriptor features).

    ``frame`` (a pandas DataFrame) has the index's columns plus ``sweep`` (its directory), ``molecule`` (its
    molecule's name), ``point`` (the design point, shared by a point's temperatures: the unit of the
    train/validation/test split) and, with descriptor features, the descriptors' columns.  ``molecule`` is the
    molecule block of the first sweep, ``molecules`` every sweep molecule's by name; the samples of the molecules
    in ``holdout`` are kept out of training and make the split's ``holdout`` set."""

    family: str
    molecule: dict
    features: list[Feature]
    frame: Any
    sources: list[str]
    excluded: dict[str, int]
    molecules: dict = field(default_factory=dict)
    holdout: tuple = ()

    def provenance(self) -> dict[str, Any]:
        """What a model trained on these data records of them: sweeps, family, the molecule (when one), the
        molecules and the held-out ones."""
        return {"sweeps": self.sources, "family": self.family,
                "molecule": self.molecule if len(self.molecules) <= 1 else None,
                "molecules": sorted(self.molecules), "holdout": list(self.holdout)}

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


def load_sweeps(directories, *, require_converged: bool = True, features: str = "parameter",
                holdout=()) -> SweepData:
    """Read the index of each sweep directory and keep the finished samples with a positive alpha (and, with
    ``require_converged``, both D diffusive).

    ``features="parameter"``: the inputs are the sweeps' varied parameters, so the sweeps must share family,
    molecule and varied parameters.  ``features="descriptor"``: the inputs are molecule descriptors
    (:mod:`~openmm_cgml.learn.descriptors`, evaluated for every sample), so the sweeps may simulate different
    molecules of one family; the molecules named in ``holdout`` are left out of training (the split's
    ``holdout`` set).

    Raises
    ------
    DatasetError
        A directory that is not a sweep, or no usable sample.
    ConfigurationError
        Sweeps that vary different parameters or simulate different molecules (parameter features) or belong to
        different families; an unknown feature kind; a held-out molecule no sweep simulates, or every molecule
        held out.
    """
    import pandas as pd

    if features not in FEATURE_KINDS:
        raise ConfigurationError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
    directories = [Path(d) for d in directories]
    if not directories:
        raise ConfigurationError("give at least one sweep directory")
    holdout = tuple(holdout or ())
    if holdout and features != "descriptor":
        raise ConfigurationError("holdout (molecules left out of training) needs descriptor features: a model of "
                                 "one molecule's parameters cannot be asked about another molecule")
    frames, first, excluded, molecules = [], None, {"not done": 0, "no alpha": 0, "not converged": 0}, {}
    cache: dict = {}
    for directory in directories:
        config = _sweep_definition(directory)
        molecule = config.molecule_model().to_data()
        if features == "parameter":
            feats = [Feature(p.column(), p.handler, p.attribute, p.unit, p.smirks, p.site) for p in config.parameters]
            key = (config.family, molecule, [f.to_data() for f in feats])
        else:
            from .descriptors import descriptor_features

            feats = descriptor_features()
            key = (config.family,)
        if first is None:
            first, first_molecule, first_feats = key, molecule, feats
        elif key != first:
            what = "family, molecule or varied parameters" if features == "parameter" else "family"
            raise ConfigurationError(f"{directory}: its {what} differ from {directories[0]}'s; learn from sweeps of "
                                     f"one {'definition' if features == 'parameter' else 'family'}")
        name = molecule["name"]
        if name in molecules and molecules[name] != molecule:
            raise ConfigurationError(f"{directory}: two different molecules are named {name!r}; give them different "
                                     "names")
        molecules[name] = molecule
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
        done["molecule"] = name
        done["point"] = done["sample_id"].str.split("-").str[0]
        if features == "descriptor" and len(done):
            from .descriptors import sample_descriptors

            columns = [p.column() for p in config.parameters]
            rows = [sample_descriptors(config, {c: float(r[c]) for c in columns}, forcefield_cache=cache)
                    for _, r in done.iterrows()]
            for f in feats:
                done[f.column] = [row[f.column] for row in rows]
        frames.append(done)
    unknown = [m for m in holdout if m not in molecules]
    if unknown:
        raise ConfigurationError(f"holdout: no sweep simulates {unknown}; the sweeps' molecules are {sorted(molecules)}")
    if holdout and set(holdout) >= set(molecules):
        raise ConfigurationError(f"holdout leaves no molecule to train on (molecules: {sorted(molecules)})")
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DatasetError(f"no usable sample in {', '.join(map(str, directories))} (excluded: {excluded})")
    if any(excluded.values()):
        logger.info("samples left out: %s", excluded)
    return SweepData(first[0], first_molecule, first_feats, frame, [str(d) for d in directories], excluded,
                     molecules, holdout)


def _points(data: SweepData) -> tuple[np.ndarray, np.ndarray]:
    """Each row's design point (sweep and point: a point's temperatures stay together) and whether its molecule is
    held out of training."""
    groups = (data.frame["sweep"] + "/" + data.frame["point"]).to_numpy()
    held = data.frame["molecule"].isin(list(data.holdout)).to_numpy() if data.holdout else np.zeros(len(groups), bool)
    return groups, held


def _check_fractions(fractions) -> None:
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigurationError(f"split fractions must be three positive numbers summing to 1, got {fractions}")


def split_by_sample(data: SweepData, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of the train, validation and test sets, split by design point (a point's temperatures stay
    together), seeded; each set gets at least one point.  The samples of ``data.holdout``'s molecules are in none
    of them but in a fourth set, ``holdout``."""
    groups, held = _points(data)
    names = np.unique(groups[~held])
    if names.size < 3:
        raise DatasetError(f"need at least 3 samples to split into train, validation and test, got {names.size}")
    _check_fractions(fractions)
    order = np.random.default_rng(seed).permutation(names)
    n_val = max(1, int(round(fractions[1] * names.size)))
    n_test = max(1, int(round(fractions[2] * names.size)))
    sets = {"validation": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    if sets["train"].size < 2:
        raise DatasetError(f"{names.size} samples leave fewer than 2 for training")
    split = {k: np.flatnonzero(np.isin(groups, v) & ~held) for k, v in sets.items()}
    if data.holdout:
        split["holdout"] = np.flatnonzero(held)
        if not split["holdout"].size:
            raise DatasetError(f"the held-out molecules {list(data.holdout)} have no usable sample")
    return split


def cross_validation_folds(data: SweepData, k: int | str, fractions=(0.7, 0.15, 0.15),
                           seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``k``-fold cross-validation by design point (``k="loo"``: one point per fold), for sweeps too small for one
    held-out test set: every point (of the molecules not held out) is the ``test`` set of exactly one fold, and
    each fold splits the remaining points into ``train`` and ``validation`` (early stopping and the calibration of
    the spread) in the proportions of ``fractions``' first two numbers, with at least one validation and two
    training points.  Returns one split (as :func:`split_by_sample`'s, without ``holdout``) per fold, seeded."""
    groups, held = _points(data)
    names = np.unique(groups[~held])
    if k == "loo":
        k = int(names.size)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigurationError(f"cross-validation needs a number of folds >= 2 or 'loo', got {k!r}")
    if k > names.size:
        raise DatasetError(f"{k} folds need at least {k} samples, got {names.size}")
    if names.size - int(np.ceil(names.size / k)) < 3:
        raise DatasetError(f"{names.size} samples in {k} folds leave fewer than 3 for training and validation")
    _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    order = rng.permutation(names)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    folds = []
    for test in np.array_split(order, k):
        rest = rng.permutation(order[~np.isin(order, test)])
        n_val = min(max(1, int(round(val_share * rest.size))), rest.size - 2)
        sets = {"train": rest[n_val:], "validation": rest[:n_val], "test": test}
        folds.append({name: np.flatnonzero(np.isin(groups, v) & ~held) for name, v in sets.items()})
    return folds

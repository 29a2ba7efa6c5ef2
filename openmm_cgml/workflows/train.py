"""Fit a neural CG force field to a mapped dataset by force matching: the ``cgml train`` workflow.

Example configuration::

    dataset: cg_mapped.h5           # coarse-grained openmm_cgml dataset with forces
    output: training/               # checkpoints, loss curves (JSON, CSV, PNG)
    bundle: model.cgml              # optional; default <output>/model.cgml
    resume: true                    # the default: continue from <output>/checkpoint.chk (same model and settings)
    overwrite: false                # true (or --overwrite): start again, replacing the checkpoint
    temperature: "300 K"            # optional: temperature of the data (temperature-aware models, priors: auto)
    # or, for one temperature-conditioned model trained on several temperatures (instead of dataset/temperature):
    # datasets:
    #   - {path: cg_300K.h5, temperature: "300 K"}   # each checked against the temperature its metadata records
    #   - {path: cg_340K.h5, temperature: "340 K"}   # one mapping for all (else refused); model.temperature_scale
    model:
      name: schnet                  # any registered model (openmm_cgml.models.MODELS), plug-ins included;
      hidden: 32                    # the other keys are that model's own hyperparameters, validated by its
      n_rbf: 16                     # own schema (CGModel.parse_config; for schnet: SchNetConfig)
      n_interactions: 2
      intra_cutoff: "0.6 nm"
      inter_cutoff: "1.0 nm"
      dtype: float32
    priors:                         # or `priors: auto`: Boltzmann-inverted harmonic bonds and angles and a
                                    # repulsion below the closest contacts, from the dataset at `temperature`
      repulsion: {sigma: "0.35 nm", exponent: 12, cutoff: "0.8 nm"}     # each prior parses its own section
      harmonic_bond: {A-B: {r0: "0.3 nm", k: "3000 kJ/mol/nm**2"}}
      harmonic_angle: {A-B-A: {theta0: "120 deg", k: "50 kJ/mol/rad**2"}}
    training:                       # openmm_cgml.training.TrainingConfig
      epochs: 100
      batch_size: 16
      learning_rate: 1.0e-3
      validation_fraction: 0.2
      seed: 0
      position_noise: "0.005 nm"    # optional smoothing (default 0 nm): Gaussian noise on training positions
                                    # penalises force derivatives, so the model holds larger MD timesteps

Rerunning after an interruption resumes from the last epoch's checkpoint, and ends as an uninterrupted run
would.  A checkpoint of another model, other training settings (``epochs`` may grow) or another dataset is
refused with a message naming what differs.  ``resume: false`` (the default of earlier versions) starts fresh
but refuses to replace an existing checkpoint unless ``overwrite: true``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import StrictModel, Temperature
from ..exceptions import ConfigurationError

__all__ = ["TrainConfig", "TemperatureDataset", "run_train", "model_arguments"]

logger = logging.getLogger(__name__)


class TemperatureDataset(StrictModel):
    """One dataset of a multi-temperature training and the temperature it was recorded at."""

    path: Path
    temperature: Temperature


class TrainConfig(StrictModel):
    """Configuration of ``cgml train`` (:func:`run_train`).

    ``datasets`` (instead of ``dataset`` and ``temperature``) trains one model on several datasets of the same CG
    system, each at its own temperature: every frame carries its temperature into the model (``model:
    temperature_scale`` makes it temperature-conditioned, centred on the datasets' mean temperature), the time-block
    validation split takes blocks of every dataset, ``priors: auto`` inverts the dataset nearest the mean
    temperature, and the bundle records the temperatures it was trained at (a System built outside their range
    warns)."""

    dataset: Path | None = None
    datasets: list[TemperatureDataset] = Field(default_factory=list)
    output: Path
    bundle: Path | None = None
    resume: bool = True
    overwrite: bool = False
    temperature: Temperature | None = None
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "schnet"})
    priors: dict[str, dict[str, Any]] | Literal["auto"] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("training")
    @classmethod
    def _training(cls, value: dict) -> dict:
        from ..training import TrainingConfig

        TrainingConfig.from_data(dict(value), source="the training section")
        return value

    @model_validator(mode="after")
    def _model(self):
        if (self.dataset is None) == (not self.datasets):
            raise ValueError("give exactly one of 'dataset' (one temperature) and 'datasets' (several, each with its "
                             "temperature)")
        if self.datasets:
            if self.temperature is not None:
                raise ValueError("with 'datasets' give each dataset's temperature there, not a top-level "
                                 "'temperature'")
            temps = sorted(d.temperature for d in self.datasets)
            if any(b - a < 0.05 for a, b in zip(temps, temps[1:])):
                raise ValueError(f"datasets: two datasets at the same temperature ({temps} K); give one per "
                                 "temperature")
        model_arguments(self.model, self.data_temperature)  # the model's own schema, before any work starts
        if self.priors == "auto" and self.data_temperature is None:
            raise ValueError("priors: auto needs the data's temperature (top-level 'temperature')")
        if isinstance(self.priors, dict):
            from ..models.priors import prior_configs

            prior_configs(self.priors)
        return self

    @property
    def data_temperature(self) -> float | None:
        """The temperature (K) of the data: ``temperature``, or the mean of the ``datasets``' temperatures (the
        reference of a temperature-conditioned model)."""
        if self.datasets:
            return float(sum(d.temperature for d in self.datasets) / len(self.datasets))
        return self.temperature

    def prior_dataset(self) -> tuple[Path, float | None]:
        """The dataset ``priors: auto`` inverts and its temperature: ``dataset``, or the one of ``datasets`` nearest
        their mean temperature."""
        if not self.datasets:
            return self.dataset, self.temperature
        mean = self.data_temperature
        best = min(self.datasets, key=lambda d: (abs(d.temperature - mean), d.temperature))
        return best.path, best.temperature


def model_arguments(section: dict[str, Any], temperature: float | None = None) -> tuple[str, dict]:
    """``(name, constructor arguments)`` of a YAML ``model`` section, validated by the registered model's own
    schema (:meth:`~openmm_cgml.models.CGModel.parse_config`)."""
    from ..models.registry import MODELS

    section = dict(section)
    name = section.pop("name", "schnet")
    cls = MODELS.get(name)
    if not hasattr(cls, "parse_config"):
        raise ConfigurationError(f"the model {name!r} ({cls!r}) does not follow the CGModel contract")
    return name, cls.parse_config(section, temperature=temperature)


def run_train(config: TrainConfig, *, progress: bool = False):
    """Train the model of ``config`` on its dataset and write the bundle; returns the
    :class:`~openmm_cgml.training.TrainingResult` (``bundle_path`` is set)."""
    from ..models.priors import prior_configs
    from ..training import TrainingConfig, boltzmann_priors, train_force_matching
    from ..training.data import check_force_dataset, load_force_data_at

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_data(dict(config))
    training = TrainingConfig.from_data(dict(cfg.training), source="the training section")
    for path in [cfg.dataset] if cfg.dataset is not None else [d.path for d in cfg.datasets]:
        check_force_dataset(path, max_frames=training.max_frames)
    data = cfg.dataset
    if cfg.datasets:  # read (and the temperatures checked against the metadata) before any fitting
        data = load_force_data_at([(d.path, d.temperature) for d in cfg.datasets], max_frames=training.max_frames)
    if cfg.priors == "auto":
        priors = boltzmann_priors(*cfg.prior_dataset())
        logger.info("priors from the dataset: %s", priors)
    else:
        priors = prior_configs(cfg.priors)
    name, args = model_arguments(cfg.model, cfg.data_temperature)
    args["priors"] = priors
    show = progress if training.progress is None else training.progress
    return train_force_matching(data, {"name": name, "args": args}, training, output_dir=cfg.output,
                                bundle_path=cfg.bundle, resume=cfg.resume, overwrite=cfg.overwrite,
                                temperature=cfg.temperature, progress=show)

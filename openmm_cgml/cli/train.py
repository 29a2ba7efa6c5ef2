"""``cgml train config.yaml``: fit a neural CG force field to a mapped dataset by force matching.

Example configuration::

    dataset: cg_mapped.h5           # coarse-grained openmm_cgml dataset with forces
    output: training/               # checkpoints, loss curves (JSON, CSV, PNG)
    bundle: model.cgml              # optional; default <output>/model.cgml
    resume: false
    temperature: "300 K"            # optional: temperature of the data (temperature-aware models)
    model:
      name: schnet
      hidden: 32
      n_rbf: 16
      n_interactions: 2
      intra_cutoff: "0.6 nm"
      inter_cutoff: "1.0 nm"
      dtype: float32
    priors:                         # or `priors: auto`: Boltzmann-inverted harmonic bonds and angles and a
                                    # repulsion below the closest contacts, from the dataset at `temperature`
      repulsion: {sigma: "0.35 nm", exponent: 12, cutoff: "0.8 nm"}
      harmonic_bond: {A-B: {r0: "0.3 nm", k: "3000 kJ/mol/nm**2"}}
      harmonic_angle: {A-B-A: {theta0: "120 deg", k: "50 kJ/mol/rad**2"}}
    training:
      epochs: 100
      batch_size: 16
      learning_rate: 1.0e-3
      validation_fraction: 0.2
      seed: 0
      position_noise: "0.005 nm"    # optional smoothing (default 0 nm): Gaussian noise on training positions
                                    # penalises force derivatives, so the model holds larger MD timesteps
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..config import Length, StrictModel, Temperature, load_config
from ..exceptions import ConfigurationError, UnitError

logger = logging.getLogger(__name__)


class ModelSection(StrictModel):
    name: str = "schnet"
    hidden: int = Field(32, ge=2)
    n_rbf: int = Field(16, ge=2)
    n_interactions: int = Field(2, ge=1)
    intra_cutoff: Length = "0.6 nm"
    inter_cutoff: Length = "1.0 nm"
    dtype: Literal["float32", "float64"] = "float32"
    skin: Length = "0.1 nm"
    temperature_scale: Temperature | None = None


class TrainConfig(StrictModel):
    """Configuration of ``cgml train``."""

    dataset: Path
    output: Path
    bundle: Path | None = None
    resume: bool = False
    temperature: Temperature | None = None
    model: ModelSection = Field(default_factory=ModelSection)
    priors: dict[str, dict[str, Any]] | Literal["auto"] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


def _quantity(value, unit: str, what: str) -> float:
    """A prior parameter with units -> float in ``unit`` (pint); bare numbers are refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnitError(f"{what}: the number {value!r} has no unit; write it like '{value} {unit}'")
    from ..units import _registry

    try:
        q = _registry().Quantity(str(value))
        if unit == "rad" and q.dimensionless:
            return float(q.to("radian").magnitude)
        return float(q.to(unit.replace("kJ/mol", "kilojoule/mole")).magnitude)
    except Exception as exc:  # pint raises several types for bad strings
        raise UnitError(f"{what}: cannot read {value!r} as a quantity in {unit}: {exc}") from exc


def prior_configs(priors: dict[str, dict[str, Any]]) -> list[dict]:
    """Turn the YAML ``priors`` section (with units) into model prior configs (MD floats)."""
    out = []
    for name, spec in priors.items():
        spec = dict(spec)
        if name == "repulsion":
            sigma = spec.pop("sigma", "0.3 nm")
            sigma = ({k: _quantity(v, "nm", f"repulsion sigma {k}") for k, v in sigma.items()}
                     if isinstance(sigma, dict) else _quantity(sigma, "nm", "repulsion sigma"))
            args = {"sigma": sigma, "exponent": int(spec.pop("exponent", 6)),
                    "cutoff": _quantity(spec.pop("cutoff", "0.8 nm"), "nm", "repulsion cutoff"),
                    "learnable": bool(spec.pop("learnable", True))}
            if spec:
                raise ConfigurationError(f"unknown repulsion prior keys {sorted(spec)}")
        elif name == "harmonic_bond":
            args = {"parameters": {k: {"r0": _quantity(v["r0"], "nm", f"bond {k} r0"),
                                       "k": _quantity(v["k"], "kJ/mol/nm**2", f"bond {k} k")} for k, v in spec.items()}}
        elif name == "harmonic_angle":
            args = {"parameters": {k: {"theta0": _quantity(v["theta0"], "rad", f"angle {k} theta0"),
                                       "k": _quantity(v["k"], "kJ/mol", f"angle {k} k")} for k, v in spec.items()}}
        else:
            args = spec
        out.append({"name": name, "args": args})
    return out


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a neural CG force field by force matching",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="YAML configuration (see the module documentation)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..training import boltzmann_priors, train_force_matching

    cfg: TrainConfig = load_config(args.config, TrainConfig)
    m = cfg.model
    if cfg.priors == "auto":
        if cfg.temperature is None:
            raise ConfigurationError("priors: auto needs the data's temperature (top-level 'temperature')")
        priors = boltzmann_priors(cfg.dataset, cfg.temperature)
        logger.info("priors from the dataset: %s", priors)
    else:
        priors = prior_configs(cfg.priors)
    model_args = {"hidden": m.hidden, "n_rbf": m.n_rbf, "n_interactions": m.n_interactions,
                  "intra_cutoff": m.intra_cutoff, "inter_cutoff": m.inter_cutoff, "dtype": m.dtype, "skin": m.skin,
                  "priors": priors}
    if m.temperature_scale is not None:
        if cfg.temperature is None:
            raise ConfigurationError("model.temperature_scale needs the data's temperature (top-level 'temperature')")
        model_args["temperature"] = {"reference": cfg.temperature, "scale": m.temperature_scale,
                                     "default": cfg.temperature}
    result = train_force_matching(cfg.dataset, {"name": m.name, "args": model_args}, cfg.training,
                                  output_dir=cfg.output, bundle_path=cfg.bundle, resume=cfg.resume,
                                  temperature=cfg.temperature)
    last = result.history[-1] if result.history else {}
    logger.info("best epoch %d, validation force MSE %.4g (kJ/mol/nm)^2", result.best_epoch,
                result.best_validation_mse)
    print(f"wrote {result.bundle_path} (best epoch {result.best_epoch}, validation force RMSE "
          f"{math.sqrt(result.best_validation_mse):.4g} kJ/mol/nm, {len(result.history)} epochs, "
          f"last lr {last.get('lr', float('nan')):.3g})")
    return 0

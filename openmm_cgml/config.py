"""Strict configuration models with unit-typed fields.

Configurations are pydantic models that forbid unknown keys.  Physical quantities
are written with units (``"300 K"``, ``"2 fs"``) in YAML and Python alike; inside
the model they are plain floats in MD units, and they are written back out as unit
strings, so that a dumped configuration reloads to the same values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

from .exceptions import ConfigurationError, UnitError
from .units import format_quantity, to_md

__all__ = [
    "StrictModel",
    "quantity_field",
    "Length",
    "Time",
    "Temperature",
    "Pressure",
    "Energy",
    "Density",
    "Frequency",
    "Timestep",
    "Friction",
    "Duration",
    "PositiveLength",
    "load_config",
]


def quantity_field(kind: str, *, gt: float | None = None, ge: float | None = None, meaning: str = ""):
    """An ``Annotated[float, ...]`` type that accepts unit strings/quantities of ``kind``.

    ``gt``/``ge`` (MD units) bound the value; a value outside is an error that states the bound with its
    unit (pydantic adds the key), before any work starts.  ``meaning`` explains the bound in the message.
    """

    def _validate(value: Any, info=None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise UnitError(f"the number {value!r} has no unit; write it with a {kind} unit, e.g. '{format_quantity(1, kind)}'")
        md = to_md(value, kind, allow_bare=False)
        if md != md:
            raise ValueError(f"must be a number, got {value!r}")
        why = f" ({meaning})" if meaning else ""
        if gt is not None and not md > gt:
            raise ValueError(f"must be greater than {format_quantity(gt, kind)}{why}, got {value!s}")
        if ge is not None and not md >= ge:
            raise ValueError(f"must be at least {format_quantity(ge, kind)}{why}, got {value!s}")
        return md

    # the bounds as annotated-types metadata too, so generated help (``cgml <command> --help``) shows them
    bounds = ([annotated_types.Gt(gt)] if gt is not None else []) + ([annotated_types.Ge(ge)] if ge is not None else [])
    return Annotated[(
        float,
        BeforeValidator(_validate),
        PlainSerializer(lambda v: format_quantity(v, kind), return_type=str, when_used="always"),
        *bounds,
    )]


Length = quantity_field("length")
Time = quantity_field("time")
#: An absolute temperature: strictly positive.
Temperature = quantity_field("temperature", gt=0, meaning="an absolute temperature")
Pressure = quantity_field("pressure")
Energy = quantity_field("energy")
#: A mass density: strictly positive.
Density = quantity_field("density", gt=0)
Frequency = quantity_field("frequency")
#: An MD timestep: strictly positive.
Timestep = quantity_field("time", gt=0, meaning="an MD timestep")
#: A thermostat friction (collision rate): zero or positive.
Friction = quantity_field("frequency", ge=0, meaning="a collision rate")
#: A duration (equilibration, production, intervals): zero or positive.
Duration = quantity_field("time", ge=0, meaning="a duration")
#: A distance such as a cutoff or a width: strictly positive.
PositiveLength = quantity_field("length", gt=0)
#: A particle mass (e.g. hydrogen mass repartitioning): strictly positive.
Mass = quantity_field("mass", gt=0, meaning="a mass")
#: An acceleration amplitude (periodic-perturbation viscosity): strictly positive.
Acceleration = quantity_field("acceleration", gt=0, meaning="an acceleration")


class StrictModel(BaseModel):
    """Base of every configuration: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _configuration_error(exc, type(self).__name__, "configuration") from None

    @classmethod
    def from_data(cls, data: dict[str, Any], *, source: str = "configuration"):
        """Validate ``data``, turning pydantic's errors into a :class:`ConfigurationError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _configuration_error(exc, cls.__name__, source) from None

    def values(self) -> dict[str, Any]:
        """The fields as Python values (quantities as MD floats), not serialised."""
        return dict(self)

    def to_data(self) -> dict[str, Any]:
        """Plain, JSON/YAML-ready data (quantities as unit strings) that reloads to an equal model."""
        return self.model_dump(mode="json")


def _configuration_error(exc: ValidationError, name: str, source: str) -> ConfigurationError:
    lines = []
    for err in exc.errors():
        inner = (err.get("ctx") or {}).get("error")
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if isinstance(inner, ConfigurationError) and getattr(inner, "config_lines", None):
            # raised by a nested StrictModel's __init__ inside this validation: its keys sit under ``loc``
            prefix = f"  {loc}." if err["loc"] else "  "
            lines.extend(prefix + line[2:] if line.startswith("  ") else line for line in inner.config_lines)
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key {loc!r} (not a setting of {name}; check its spelling)"
        lines.append(f"  {loc}: {msg}")
    error = ConfigurationError(f"invalid {source} for {name}:\n" + "\n".join(lines))
    error.config_lines = lines
    return error


def load_config(path: str | Path, model: type[StrictModel]) -> StrictModel:
    """Read a YAML file and validate it as ``model``."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    return model.from_data(data, source=str(path))

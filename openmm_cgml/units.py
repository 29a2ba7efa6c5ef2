"""Units at the edges, plain MD floats inside.

Public functions accept :mod:`openmm.unit` quantities, pint quantities or strings
such as ``"300 K"`` and ``"2 fs"``; internally everything is a plain ``float`` in
OpenMM's MD units (nm, ps, K, bar, kJ/mol, dalton).  Strings are parsed with pint.
"""

from __future__ import annotations

import functools
import numbers
import re

import openmm.unit as u

from .exceptions import UnitError

__all__ = ["MD_UNITS", "KB", "BAR_PER_KJ_MOL_NM3", "to_md", "strip", "format_quantity", "as_openmm", "system_masses"]

#: Boltzmann's constant per mole (the molar gas constant), kJ/mol/K: the package's one value of it.
KB: float = u.MOLAR_GAS_CONSTANT_R.value_in_unit(u.kilojoule_per_mole / u.kelvin)

#: 1 kJ/mol/nm^3 expressed in bar (a pressure from energies and volumes in MD units).
BAR_PER_KJ_MOL_NM3: float = (1.0 * u.kilojoule_per_mole / u.nanometer**3 / u.AVOGADRO_CONSTANT_NA).value_in_unit(u.bar)

#: 1 Da/nm^3 (per particle) expressed in g/cm^3: a mass density from masses and volumes in MD units.
G_CM3_PER_DA_NM3: float = (1.0 * u.dalton / u.nanometer**3 / u.AVOGADRO_CONSTANT_NA).value_in_unit(
    u.gram / u.centimeter**3)

#: Canonical MD unit for each kind of quantity: (pint unit string, openmm unit).
MD_UNITS: dict[str, tuple[str, u.Unit]] = {
    "length": ("nanometer", u.nanometer),
    "time": ("picosecond", u.picosecond),
    "temperature": ("kelvin", u.kelvin),
    "pressure": ("bar", u.bar),
    "energy": ("kilojoule / mole", u.kilojoule_per_mole),
    "mass": ("dalton", u.dalton),
    "density": ("gram / centimeter ** 3", u.gram / u.centimeter**3),
    "force": ("kilojoule / mole / nanometer", u.kilojoule_per_mole / u.nanometer),
    "diffusion": ("nanometer ** 2 / picosecond", u.nanometer**2 / u.picosecond),
    "velocity": ("nanometer / picosecond", u.nanometer / u.picosecond),
    "frequency": ("1 / picosecond", u.picosecond**-1),
    "volume": ("nanometer ** 3", u.nanometer**3),
    "acceleration": ("nanometer / picosecond ** 2", u.nanometer / u.picosecond**2),
}

_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*)$")

#: Short symbols used when writing quantities back out (configs, metadata).
_SYMBOLS = {
    "length": "nm",
    "time": "ps",
    "temperature": "K",
    "pressure": "bar",
    "energy": "kJ/mol",
    "mass": "Da",
    "density": "g/cm**3",
    "force": "kJ/mol/nm",
    "diffusion": "nm**2/ps",
    "velocity": "nm/ps",
    "frequency": "1/ps",
    "volume": "nm**3",
    "acceleration": "nm/ps**2",
}


@functools.cache
def _registry():
    import pint

    return pint.UnitRegistry()


def _check_kind(kind: str) -> None:
    if kind not in MD_UNITS:
        raise UnitError(f"unknown kind of quantity {kind!r}; expected one of {sorted(MD_UNITS)}")


def to_md(value, kind: str, *, name: str = "value", allow_bare: bool = True) -> float:
    """Convert ``value`` to a float in the MD unit of ``kind``.

    Parameters
    ----------
    value : str, openmm.unit.Quantity, pint.Quantity or real number
        ``"300 K"``, ``300 * unit.kelvin``, ...  A bare number is taken to be in MD
        units already, unless ``allow_bare`` is False (configuration files).
    kind : str
        One of the keys of :data:`MD_UNITS` (``"temperature"``, ``"time"``, ...).
    name : str
        Name of the quantity, used in error messages.
    allow_bare : bool
        Whether a bare number is accepted.

    Raises
    ------
    UnitError
        If the unit is missing (and bare numbers are not allowed), cannot be parsed,
        or has the wrong dimension.
    """
    _check_kind(kind)
    pint_unit, mm_unit = MD_UNITS[kind]
    if isinstance(value, bool):
        raise UnitError(f"{name}: expected a {kind} such as '{_example(kind)}', got a bool")
    if isinstance(value, numbers.Real):
        if not allow_bare:
            raise UnitError(
                f"{name}: the number {value!r} has no unit; write it with one, e.g. '{_example(kind)}'"
            )
        return float(value)
    if isinstance(value, u.Quantity):
        try:
            return float(value.value_in_unit(mm_unit))
        except TypeError as exc:
            raise UnitError(f"{name}: {value} is not a {kind} (expected units compatible with {pint_unit})") from exc
    if isinstance(value, str):
        import pint

        reg = _registry()
        match = _NUMBER_UNIT.match(value)
        try:
            if match and match.group(2).strip():  # "25 degC": offset units need (number, unit)
                unit_text = match.group(2).strip()
                if unit_text.startswith("/"):  # "1 /ps"
                    unit_text = "1" + unit_text
                quantity = reg.Quantity(float(match.group(1)), unit_text)
            else:
                quantity = reg.Quantity(value.strip())
        except (pint.errors.PintError, ValueError, SyntaxError, TypeError, AttributeError) as exc:
            raise UnitError(f"{name}: cannot parse {value!r} as a {kind}; expected e.g. '{_example(kind)}'") from exc
        return _from_pint(quantity, kind, name, allow_bare)
    if hasattr(value, "to") and hasattr(value, "magnitude"):  # a pint Quantity from any registry
        return _from_pint(_registry().Quantity(str(value)), kind, name, allow_bare)
    raise UnitError(f"{name}: expected a {kind} (string, openmm or pint quantity), got {type(value).__name__}")


def system_masses(system):
    """The particle masses of an OpenMM ``System`` in dalton, an ndarray (virtual sites: 0)."""
    import numpy as np

    return np.array([system.getParticleMass(i).value_in_unit(u.dalton) for i in range(system.getNumParticles())],
                    dtype=float)


def strip(value, unit, *, name: str = "value"):
    """``value`` converted to ``unit`` and stripped of it: a float, or an ndarray for arrays and vectors.

    Parameters
    ----------
    value : openmm.unit.Quantity, pint Quantity, unit string, sequence of Quantities, array or number
        A Quantity is converted (``5 * unit.angstrom`` with ``unit=unit.nanometer`` gives 0.5);
        a plain number or array is taken to be in ``unit`` already; a list of Quantities (box vectors
        as ``Vec3`` Quantities) is converted element by element.
    unit : openmm.unit.Unit or str
        The target unit, or a kind of :data:`MD_UNITS` (``"length"``: nm, ...).
    name : str
        Used in error messages.

    Raises
    ------
    UnitError
        If ``value`` has a unit incompatible with ``unit``.
    """
    import numpy as np

    if isinstance(unit, str):
        _check_kind(unit)
        kind, target = unit, MD_UNITS[unit][1]
    else:
        kind, target = None, unit
    if isinstance(value, u.Quantity):
        if not value.unit.is_compatible(target):
            raise UnitError(f"{name}: {value} cannot be expressed in {target} (incompatible units)")
        out = value.value_in_unit(target)
        return float(out) if isinstance(out, numbers.Real) else np.asarray(out, dtype=float)
    if isinstance(value, str) or (hasattr(value, "to") and hasattr(value, "magnitude")):
        if kind is not None:
            return to_md(value, kind, name=name)
        import pint

        try:
            quantity = _registry().Quantity(value) if isinstance(value, str) else _registry().Quantity(str(value))
            return float(quantity.to(str(target)).magnitude)
        except (pint.errors.PintError, ValueError, TypeError, AttributeError) as exc:
            raise UnitError(f"{name}: cannot convert {value!r} to {target}: {exc}") from exc
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, u.Quantity) for v in value):
        return np.asarray([strip(v, unit, name=name) for v in value], dtype=float)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return np.asarray(value, dtype=float)


def _from_pint(quantity, kind: str, name: str, allow_bare: bool) -> float:
    import pint

    if quantity.dimensionless:
        if not allow_bare:
            raise UnitError(f"{name}: {quantity.magnitude!r} has no unit; expected e.g. '{_example(kind)}'")
        return float(quantity.magnitude)
    try:
        return float(quantity.to(MD_UNITS[kind][0]).magnitude)
    except pint.errors.DimensionalityError as exc:
        raise UnitError(f"{name}: {quantity} is not a {kind}; expected units compatible with {MD_UNITS[kind][0]}") from exc


def _example(kind: str) -> str:
    examples = {
        "length": "1.2 nm",
        "time": "2 fs",
        "temperature": "300 K",
        "pressure": "1 bar",
        "energy": "2.5 kJ/mol",
        "mass": "12 Da",
        "density": "0.7 g/cm**3",
        "force": "10 kJ/mol/nm",
        "diffusion": "1e-9 m**2/s",
        "velocity": "1 nm/ps",
        "frequency": "1 /ps",
        "volume": "27 nm**3",
    }
    return examples[kind]


def format_quantity(value: float, kind: str) -> str:
    """Write an MD float back as a unit string, e.g. ``format_quantity(300.0, "temperature") == "300.0 K"``."""
    _check_kind(kind)
    return f"{float(value)!r} {_SYMBOLS[kind]}"


def as_openmm(value: float, kind: str) -> u.Quantity:
    """Wrap an MD float as an :mod:`openmm.unit` quantity of ``kind``."""
    _check_kind(kind)
    return float(value) * MD_UNITS[kind][1]

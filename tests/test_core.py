"""Core plumbing: units, configuration models, registry, exceptions."""

import openmm.unit as u
import pytest

from openmm_cgml import CGMLError, ConfigurationError, Registry, UnitError, UnknownNameError
from openmm_cgml.config import Pressure, StrictModel, Temperature, Time
from openmm_cgml.units import as_openmm, format_quantity, to_md


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("300 K", "temperature", 300.0),
        ("2 fs", "time", 0.002),
        ("1 atm", "pressure", 1.01325),
        ("0.715 g/cm**3", "density", 0.715),
        ("9 angstrom", "length", 0.9),
        ("1 kcal/mol", "energy", 4.184),
        (2.0 * u.femtosecond, "time", 0.002),
        (1.0 * u.angstrom, "length", 0.1),
        (1.5, "length", 1.5),
    ],
)
def test_to_md_converts_to_md_units(value, kind, expected):
    assert to_md(value, kind) == pytest.approx(expected)


def test_to_md_rejects_wrong_dimension_and_bare_numbers():
    with pytest.raises(UnitError, match="not a temperature"):
        to_md("300 nm", "temperature")
    with pytest.raises(UnitError, match="not a time"):
        to_md(300 * u.kelvin, "time")
    with pytest.raises(UnitError, match="no unit"):
        to_md(300, "temperature", allow_bare=False)
    with pytest.raises(UnitError, match="cannot parse"):
        to_md("300 furlongs per gizmo", "temperature")
    assert issubclass(UnitError, ValueError)


def test_format_and_openmm_round_trip():
    assert to_md(format_quantity(0.002, "time"), "time") == 0.002
    assert as_openmm(300.0, "temperature") == 300.0 * u.kelvin


class _Config(StrictModel):
    temperature: Temperature
    pressure: Pressure = "1 bar"
    timestep: Time = "2 fs"


def test_config_round_trip_and_strictness():
    cfg = _Config.from_data({"temperature": "25 degC"})
    assert cfg.temperature == pytest.approx(298.15)
    assert _Config.from_data(cfg.to_data()) == cfg
    with pytest.raises(ConfigurationError, match="temperature"):
        _Config.from_data({"temperature": 300})  # unitless values are refused
    with pytest.raises(ConfigurationError, match="temprature"):
        _Config.from_data({"temperature": "300 K", "temprature": "1 K"})


def test_registry_lists_known_names_on_unknown_name():
    reg = Registry("test-only-kind")  # no entry points in this group: only what the test registers
    reg.register("harmonic", lambda **kw: ("harmonic", kw))
    reg.register("repulsion")(lambda **kw: "rep")
    assert reg.create("harmonic", k=1.0) == ("harmonic", {"k": 1.0})
    with pytest.raises(UnknownNameError) as info:
        reg.get("harmonik")
    message = str(info.value)
    assert "harmonik" in message and "harmonic" in message and "repulsion" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, CGMLError)
    with pytest.raises(ConfigurationError, match="already registered"):
        reg.register("harmonic", lambda: None)
    assert reg.names() == ["harmonic", "repulsion"]


def test_main_classes_are_public_and_lazy():
    import subprocess
    import sys

    code = ("import sys, openmm_cgml as c; assert 'torch' not in sys.modules and 'openmm_cgml.mapping' not in "
            "sys.modules; from openmm_cgml import CGMapping, CGSystemBuilder, DatasetReporter, "
            "TimeCorrelationReporter, open_dataset; print(CGMapping.__name__, CGSystemBuilder.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["CGMapping", "CGSystemBuilder"]

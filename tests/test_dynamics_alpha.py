"""Acceleration factor, alpha(T) models from Arrhenius fits, JSON round trip and the registry."""

import json

import numpy as np
import pytest

from openmm_cgml.analysis import GAS_CONSTANT, fit_arrhenius
from openmm_cgml.dynamics import (
    ALPHA_MODELS,
    ArrheniusAlpha,
    ConstantAlpha,
    acceleration_factor,
    load_alpha_model,
    save_alpha_model,
)
from openmm_cgml.exceptions import ConfigurationError, CorruptFileError, UnknownNameError


def test_acceleration_factor_and_error_propagation():
    f = acceleration_factor(7.2e-3, 0.2e-3, 1.15e-3, 0.05e-3, temperature="298 K")
    assert f.alpha == pytest.approx(7.2 / 1.15)
    assert f.alpha_err == pytest.approx(f.alpha * np.hypot(0.2 / 7.2, 0.05 / 1.15))
    assert f.temperature == pytest.approx(298.0)
    with pytest.raises(ConfigurationError, match="positive"):
        acceleration_factor(0.0, 0.1, 1.0, 0.1)


def _fit(ln_a, ea, temps, rel_err=0.02, seed=0):
    rng = np.random.default_rng(seed)
    d = np.exp(ln_a - ea / (GAS_CONSTANT * temps)) * (1 + rel_err * rng.normal(size=temps.size))
    return fit_arrhenius(temps, d, rel_err * d)


def test_arrhenius_alpha_model_from_two_fits():
    temps = np.array([280.0, 300.0, 320.0, 340.0])
    aa = _fit(np.log(3.0), 19.95, temps, seed=1)
    cg = _fit(np.log(1.5), 12.49, temps, seed=2)
    model = ArrheniusAlpha.from_fits(cg, aa)
    for t in (280.0, 310.0, 350.0):
        expected = np.exp(cg.ln_prefactor - aa.ln_prefactor - (cg.activation_energy - aa.activation_energy)
                          / (GAS_CONSTANT * t))
        assert model.alpha(t) == pytest.approx(expected, rel=1e-12)
        # alpha is the ratio of the two fitted D(T)
        assert model.alpha(t) == pytest.approx(cg.predict(t)[0] / aa.predict(t)[0], rel=1e-12)
        assert 0 < model.alpha_err(t) < model.alpha(t)
    # CG less activated than AA: alpha falls with temperature
    assert model.alpha(280.0) > model.alpha(350.0)
    assert model.alpha("300 K") == model.alpha(300.0)


def test_alpha_model_json_round_trip_and_registry(tmp_path):
    model = ArrheniusAlpha(0.1, 12.5, 1.1, 20.0, [[0.01, 0.002], [0.002, 0.3]], [[0.02, 0.0], [0.0, 0.4]], (280, 340))
    path = save_alpha_model(tmp_path / "alpha.json", model, metadata={"system": "test"})
    data = json.loads(path.read_text())
    assert data["model"] == "arrhenius" and data["units"]["activation_energy"] == "kJ/mol"
    loaded = load_alpha_model(path)
    assert isinstance(loaded, ArrheniusAlpha)
    for t in (290.0, 330.0):
        assert loaded.alpha(t) == model.alpha(t) and loaded.alpha_err(t) == model.alpha_err(t)
    const = load_alpha_model(save_alpha_model(tmp_path / "c.json", ConstantAlpha(6.3, 0.4)))
    assert const.alpha(123.0) == 6.3 and const.alpha_err(None) == 0.4
    assert {"constant", "arrhenius"} <= set(ALPHA_MODELS.names())

    # a later, learned model drops in through the registry
    @ALPHA_MODELS.register("test-linear", overwrite=True)
    class LinearAlpha(ConstantAlpha):
        name = "test-linear"

        def __init__(self, slope: float):
            super().__init__(1.0)
            self.slope = slope

        def alpha(self, temperature=None):
            return self.slope * float(temperature)

        def to_data(self):
            return {"slope": self.slope}

    assert load_alpha_model(save_alpha_model(tmp_path / "l.json", LinearAlpha(0.02))).alpha(300.0) == pytest.approx(6.0)

    (tmp_path / "bad.json").write_text(json.dumps({"format": "openmm_cgml.alpha_model", "format_version": 1,
                                                   "model": "nope", "parameters": {}}))
    with pytest.raises(UnknownNameError, match="known alpha_models: .*arrhenius"):
        load_alpha_model(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        load_alpha_model(tmp_path / "junk.json")


def test_arrhenius_alpha_warns_outside_its_fitted_range(caplog):
    import logging

    from openmm_cgml.dynamics.alpha import ArrheniusAlpha

    model = ArrheniusAlpha(**ArrheniusAlpha.example_args())  # fitted on 280-340 K
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.dynamics.alpha"):
        model.alpha("300 K")
        model.alpha_err(320.0)
    assert "extrapolation" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="openmm_cgml.dynamics.alpha"):
        model.alpha("380 K")
        model.alpha("380 K")
    assert caplog.text.count("extrapolation") == 1 and "380 K" in caplog.text

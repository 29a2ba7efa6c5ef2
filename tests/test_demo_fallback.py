"""The demo's neural CG run steps down through the timesteps that held in its scan when a longer run blows up."""

import logging

import pytest

from openmm_cgml.exceptions import SimulationError
from openmm_cgml.workflows.demo import run_stepping_down


def test_run_steps_down_until_a_timestep_holds(caplog):
    calls = []

    def run(dt_fs, attempt):
        calls.append((dt_fs, attempt))
        if dt_fs > 15:
            raise SimulationError(f"the production became unstable at {dt_fs} fs")
        return f"ran at {dt_fs:g} fs"

    with caplog.at_level(logging.WARNING, logger="openmm_cgml.workflows.demo"):
        assert run_stepping_down(run, [5, 25, 15, 20]) == "ran at 15 fs"
    assert calls == [(25.0, 0), (20.0, 1), (15.0, 2)]  # largest first; 5 fs never needed
    assert "failed at 25 fs" in caplog.text and "retrying at 20 fs" in caplog.text


def test_the_last_failure_propagates_and_no_timestep_is_an_error():
    def always_fails(dt_fs, attempt):
        raise SimulationError(f"blew up at {dt_fs:g} fs")

    with pytest.raises(SimulationError, match="blew up at 5 fs"):
        run_stepping_down(always_fails, [10, 5])
    with pytest.raises(SimulationError, match="none held"):
        run_stepping_down(always_fails, [])


def test_demo_viscosity_is_measured_once_and_flagged_when_not_linear(tmp_path, monkeypatch):
    """The full demo's viscosity step: a periodic-perturbation measurement kept in a JSON file, reused on the next
    run (resume), redone when fresh, and shown in the summary with its standard error, flagged when the two
    amplitudes disagree."""
    import json

    import numpy as np
    from _cg_fluid import known_system

    import openmm_cgml.dynamics as dynamics
    from openmm_cgml.workflows.demo import _viscosity, _viscosity_text

    system, *_, box = known_system(n_dimers=32, box=2.2)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:32] * 0.55 + 0.1
    positions = np.concatenate([grid, grid + [0.3, 0, 0]]).reshape(2, 32, 3).transpose(1, 0, 2).reshape(64, 3)
    positions += rng.normal(0, 0.005, positions.shape)
    path = tmp_path / "visc.json"
    first = _viscosity(path, system, positions, box, (0.4, 0.2), timestep_ps=0.002, production_ps=2.0,
                       platform="Reference", fresh=False)
    assert first["viscosity_mPa_s"] > 0 and first["viscosity_err_mPa_s"] > 0
    assert [e["acceleration_nm_ps2"] for e in first["estimates"]] == [0.4, 0.2]
    assert json.loads(path.read_text()) == first

    def must_not_run(*args, **kwargs):
        raise AssertionError("the viscosity was measured again")

    monkeypatch.setattr(dynamics, "periodic_perturbation_viscosity", must_not_run)
    assert _viscosity(path, system, positions, box, (0.4, 0.2), timestep_ps=0.002, production_ps=2.0,
                      platform="Reference", fresh=False) == first
    with pytest.raises(AssertionError, match="measured again"):
        _viscosity(path, system, positions, box, (0.4, 0.2), timestep_ps=0.002, production_ps=2.0,
                   platform="Reference", fresh=True)
    assert "s.e." in _viscosity_text(first)
    assert "FLAGGED" in _viscosity_text({**first, "linear": False})
    assert "not measured" in _viscosity_text(None)

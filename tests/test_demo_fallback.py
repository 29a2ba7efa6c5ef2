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

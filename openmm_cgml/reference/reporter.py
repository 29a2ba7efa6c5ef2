"""An OpenMM reporter that records frames into an openmm_cgml dataset."""

from __future__ import annotations

import numpy as np
from openmm import unit

from ..dataset import TrajectoryWriter
from ..exceptions import SimulationError

__all__ = ["DatasetReporter", "NonFiniteFrame"]


class NonFiniteFrame(SimulationError):
    """A frame the :class:`DatasetReporter` refuses to record (NaN or inf): the simulation has blown up.
    ``what`` says what is not finite and ``step`` where."""

    def __init__(self, what: str, step: int):
        self.what, self.step = what, int(step)
        super().__init__(f"{what} at step {step}: the simulation has blown up")


class DatasetReporter:
    """Record positions, velocities, forces, box, energies, step and time every ``reportInterval`` steps.

    Follows the OpenMM reporter protocol (``describeNextReport`` in dict form,
    ``report``), so it can be added to ``simulation.reporters`` of any OpenMM script.

    Notes
    -----
    - Positions are recorded as integrated (``periodic: False``): molecules stay whole
      and trajectories are continuous across the box faces, as needed for diffusion.
    - Forces are the forces OpenMM reports: the gradient of the potential energy.
      Constraint forces are NOT included.  For a coarse-grained bead that contains a
      whole constrained bond both atoms' constraint forces cancel in the bead sum, but
      a constraint between atoms of two different beads leaves an unbalanced force,
      which the mapping layer detects and refuses.
    - With ``LangevinMiddleIntegrator`` the reported velocities are the half-step
      (leapfrog) velocities.
    - A non-finite potential energy or force raises :class:`SimulationError` naming the step.

    Parameters
    ----------
    writer : TrajectoryWriter
        Where frames go; the reporter does not close it unless ``close()`` is called.
    reportInterval : int
        Steps between frames.
    """

    def __init__(self, writer: TrajectoryWriter, reportInterval: int):
        if int(reportInterval) < 1:
            raise ValueError(f"reportInterval must be a positive number of steps, got {reportInterval}")
        self._writer = writer
        self._interval = int(reportInterval)
        self._want = set(writer.fields)

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        return {
            "steps": steps,
            "periodic": False,
            "include": ["positions", "energy"]
            + (["velocities"] if "velocities" in self._want else [])
            + (["forces"] if "forces" in self._want else []),
        }

    def report(self, simulation, state):
        nm = unit.nanometer
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        step = simulation.currentStep
        kwargs = {}
        if "velocities" in self._want:
            kwargs["velocities"] = state.getVelocities(asNumpy=True).value_in_unit(nm / unit.picosecond)
            if not np.isfinite(kwargs["velocities"]).all():
                raise NonFiniteFrame("velocities are not finite", step)
        if "forces" in self._want:
            forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / nm)
            if not np.isfinite(forces).all():
                raise NonFiniteFrame("forces are not finite", step)
            kwargs["forces"] = forces
        if not np.isfinite(energy):
            raise NonFiniteFrame(f"potential energy {energy}", step)
        self._writer.append(
            positions=state.getPositions(asNumpy=True).value_in_unit(nm),
            box=state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(nm),
            step=step,
            time=state.getTime().value_in_unit(unit.picosecond),
            potential_energy=energy,
            kinetic_energy=state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
            **kwargs,
        )

    def close(self):
        self._writer.close()

"""Thermostats: which one a run used, recorded in its dataset, and the OpenMM integrator that realises it.

Transport coefficients (D, the velocity autocorrelation, alpha = D_CG / D_AA) depend on the thermostat: a
local Langevin thermostat at 1 /ps damps diffusion, Andersen collisions too, while NVE and global thermostats
(Nose-Hoover chains, Bussi's stochastic velocity rescaling) leave it indistinguishable from NVE (Basconi and
Shirts, J. Chem. Theory Comput. 9, 2887 (2013)).  Structure sampling may use any of them.

:class:`Thermostat` is the configuration (YAML: ``thermostat: {kind: bussi, tau: "0.5 ps"}``);
:meth:`Thermostat.metadata` is what a dataset records as ``metadata["thermostat"]``, and
:func:`recorded_thermostat` reads it back (from datasets written before the key existed too: they were
Langevin runs recording ``friction_per_ps``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_serializer, model_validator

from .config import Friction, StrictModel, Time
from .exceptions import ConfigurationError
from .units import system_masses

__all__ = ["Thermostat", "THERMOSTAT_KINDS", "TRANSPORT_SAFE", "recorded_thermostat", "same_thermostat",
           "describe_thermostat", "as_thermostat", "make_integrator", "integrator_name", "bussi_integrator",
           "thermostat_degrees_of_freedom", "TRANSPORT_DEFAULT"]

#: Thermostat kinds.  ``nve``: none (the run's energy is conserved; the temperature is set at the start).
THERMOSTAT_KINDS = ("langevin", "bussi", "nose-hoover", "nve")
#: Kinds that leave transport as in NVE (Basconi and Shirts 2013).
TRANSPORT_SAFE = frozenset({"bussi", "nose-hoover", "nve"})


class Thermostat(StrictModel):
    """How a run holds its temperature.

    ``kind``: ``langevin`` (OpenMM's ``LangevinMiddleIntegrator`` with ``friction``; local, damps transport),
    ``bussi`` (stochastic velocity rescaling with relaxation time ``tau``; global), ``nose-hoover`` (OpenMM's
    ``NoseHooverIntegrator`` chain with collision frequency ``1 / tau``; global) or ``nve`` (no thermostat).

    ``interval`` (``bussi`` only): steps between two rescalings (GROMACS's ``nsttcouple``).  Each rescaling relaxes
    the kinetic energy over ``interval`` steps (c = exp(-interval dt / tau)) and is canonical for any interval; the
    steps between are plain velocity Verlet.  A longer interval saves the kinetic-energy sums, which on a GPU each
    wait for the device (``benchmarks/bench_thermostat_interval.py``).  Keep ``interval * dt`` well below ``tau``.
    """

    kind: Literal["langevin", "bussi", "nose-hoover", "nve"] = "langevin"
    friction: Friction = "1 /ps"
    tau: Time = "0.5 ps"
    interval: int = Field(1, ge=1, description="bussi: steps between two velocity rescalings (1: every step)")

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "langevin" and not self.friction > 0:
            raise ValueError("a Langevin thermostat needs friction > 0 (use kind: nve for no thermostat)")
        if self.kind in ("bussi", "nose-hoover") and not self.tau > 0:
            raise ValueError(f"a {self.kind} thermostat needs tau > 0 ps")
        if self.interval != 1 and self.kind != "bussi":
            raise ValueError(f"interval (steps between rescalings) is a setting of the bussi thermostat, not of "
                             f"{self.kind}: remove it")
        return self

    @model_serializer(mode="wrap")
    def _serialize(self, handler):
        # rescaling every step is written as before the key existed: checkpoint identities and metadata unchanged
        data = handler(self)
        if self.interval == 1:
            data.pop("interval", None)
        return data

    @property
    def preserves_transport(self) -> bool:
        """Whether diffusion and other transport under it equal NVE's (global thermostats, NVE)."""
        return self.kind in TRANSPORT_SAFE

    def metadata(self, temperature: float | None) -> dict[str, Any]:
        """What a dataset records as ``metadata["thermostat"]`` (MD units)."""
        data: dict[str, Any] = {"kind": self.kind, "temperature_K": temperature}
        if self.kind == "langevin":
            data["friction_per_ps"] = self.friction
        elif self.kind in ("bussi", "nose-hoover"):
            data["tau_ps"] = self.tau
        if self.interval != 1:
            data["interval_steps"] = self.interval
        return data


def recorded_thermostat(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The thermostat a dataset's recorded part ran under (``metadata["thermostat"]``), or None if unknown.

    Datasets written before the key existed ran Langevin dynamics and recorded ``friction_per_ps`` (and
    ``integrator: LangevinMiddleIntegrator``); they are read as such.
    """
    found = metadata.get("thermostat")
    if isinstance(found, dict) and found.get("kind") in THERMOSTAT_KINDS:
        return dict(found)
    if metadata.get("integrator") == "LangevinMiddleIntegrator" or "friction_per_ps" in metadata:
        return {"kind": "langevin", "temperature_K": metadata.get("temperature_K"),
                "friction_per_ps": metadata.get("friction_per_ps")}
    return None


def same_thermostat(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two recorded thermostats give comparable transport: both preserve it (any global thermostat or
    NVE), or both are the same local thermostat with the same friction."""
    if a is None or b is None:
        return False
    if a["kind"] in TRANSPORT_SAFE and b["kind"] in TRANSPORT_SAFE:
        return True
    return a["kind"] == b["kind"] and a.get("friction_per_ps") == b.get("friction_per_ps")


def describe_thermostat(recorded: dict[str, Any] | None) -> str:
    """A short label, e.g. ``"Langevin 1 /ps"``, ``"Bussi tau 0.5 ps"``, ``"NVE"``, ``"unknown"``."""
    if recorded is None:
        return "unknown"
    kind = recorded["kind"]
    if kind == "langevin":
        return f"Langevin {recorded.get('friction_per_ps', float('nan')):g} /ps"
    if kind in ("bussi", "nose-hoover"):
        name = "Bussi" if kind == "bussi" else "Nose-Hoover"
        every = recorded.get("interval_steps", 1)
        return f"{name} tau {recorded.get('tau_ps', float('nan')):g} ps" + (f", every {every} steps" if every != 1
                                                                            else "")
    return "NVE"


#: The default thermostat of runs that transport (D, alpha) is measured from: the reference's production and the
#: demo's CG runs.  Bussi's rescaling with tau 1 ps: global (transport as in NVE), canonical, and as cheap as
#: velocity Verlet (docs/guide/dynamics.md, "Thermostats and transport").
TRANSPORT_DEFAULT = Thermostat(kind="bussi", tau="1 ps")


def as_thermostat(value: Thermostat | dict[str, Any] | None, *, default: Thermostat | None = None,
                  name: str = "thermostat") -> Thermostat:
    """A :class:`Thermostat` from itself, its dict (YAML form) or None (``default``, else Langevin 1 /ps).

    Raises
    ------
    ConfigurationError
        ``value`` is neither, or its keys are wrong (the message names them, under ``name``).
    """
    if value is None:
        return default if default is not None else Thermostat()
    if isinstance(value, Thermostat):
        return value
    if isinstance(value, dict):
        return Thermostat.from_data(dict(value), source=name)
    raise ConfigurationError(f"{name}: expected a Thermostat or a mapping such as {{kind: bussi, tau: 0.5 ps}}, "
                             f"got {type(value).__name__}")


def thermostat_degrees_of_freedom(system) -> int:
    """Degrees of freedom a thermostat acts on: 3 per massive particle, less the constraints, less 3 when the
    System removes its centre-of-mass motion (massless particles, virtual sites, do not move by themselves)."""
    import openmm

    n_massive = int((system_masses(system) > 0).sum())
    n_dof = 3 * n_massive - system.getNumConstraints()
    if any(isinstance(system.getForce(i), openmm.CMMotionRemover) for i in range(system.getNumForces())):
        n_dof -= 3
    return n_dof


def integrator_name(thermostat: Thermostat) -> str:
    """The integrator :func:`make_integrator` builds, as datasets record it (``metadata["integrator"]``)."""
    if thermostat.kind == "bussi" and thermostat.interval != 1:
        return f"CustomIntegrator (Bussi velocity rescaling every {thermostat.interval} steps, velocity Verlet)"
    return {"langevin": "LangevinMiddleIntegrator", "bussi": "CustomIntegrator (Bussi velocity rescaling, "
            "velocity Verlet)", "nose-hoover": "NoseHooverIntegrator", "nve": "VerletIntegrator"}[thermostat.kind]


def make_integrator(thermostat: Thermostat | dict[str, Any], temperature: float, timestep: float, seed: int = 0,
                    *, system=None):
    """The OpenMM integrator realising ``thermostat`` at ``temperature`` (K) with ``timestep`` (ps).

    - ``langevin``: ``LangevinMiddleIntegrator`` (friction ``thermostat.friction``), random seed ``seed``;
    - ``bussi``: :func:`bussi_integrator` (needs ``system``: its degrees of freedom), random seed ``seed``,
      rescaling every ``thermostat.interval`` steps;
    - ``nose-hoover``: ``NoseHooverIntegrator``, a chain of 3 with collision frequency ``1 / tau``
      (deterministic; ``seed`` unused);
    - ``nve``: ``VerletIntegrator`` (the temperature is only that of the starting velocities).

    Raises
    ------
    ConfigurationError
        A temperature or timestep that is not positive, or ``bussi`` without ``system``.
    """
    import openmm
    from openmm import unit

    thermostat = as_thermostat(thermostat)
    if not temperature > 0:
        raise ConfigurationError(f"temperature must be greater than 0 K, got {temperature} K")
    if not timestep > 0:
        raise ConfigurationError(f"timestep must be greater than 0 ps, got {timestep} ps")
    if thermostat.kind == "langevin":
        integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, thermostat.friction / unit.picosecond,
                                                     timestep * unit.picosecond)
        integrator.setRandomNumberSeed(int(seed))
    elif thermostat.kind == "bussi":
        if system is None:
            raise ConfigurationError("a bussi thermostat needs the System (its degrees of freedom): "
                                     "make_integrator(..., system=system)")
        integrator = bussi_integrator(system, temperature, timestep, thermostat.tau, seed, interval=thermostat.interval)
    elif thermostat.kind == "nose-hoover":
        integrator = openmm.NoseHooverIntegrator(temperature * unit.kelvin, 1.0 / thermostat.tau / unit.picosecond,
                                                 timestep * unit.picosecond, 3, 3, 7)
    else:
        integrator = openmm.VerletIntegrator(timestep * unit.picosecond)
    return integrator


def bussi_integrator(system, temperature: float, timestep: float, tau: float, seed: int = 0, *, interval: int = 1):
    """Velocity Verlet with Bussi, Donadio and Parrinello's stochastic velocity rescaling (J. Chem. Phys. 126,
    014101 (2007)) after every ``interval``-th step, as an OpenMM ``CustomIntegrator``.

    Each rescaling multiplies all velocities by alpha, drawn so that the kinetic energy K relaxes to its target
    K_t = N_f kT / 2 with time constant ``tau`` (ps) and samples the canonical distribution of K (eq. A7 of the
    paper), with c = exp(-interval dt / tau), R1 a standard Gaussian and S a sum of N_f - 1 squared Gaussians:

        alpha^2 = c + (1 - c) (S + R1^2) K_t / (N_f K) + 2 R1 sqrt(c (1 - c) K_t / (N_f K))

    and alpha's sign that of R1 + sqrt(c N_f K / ((1 - c) K_t)).  S is drawn exactly: per-degree-of-freedom
    Gaussians squared and summed under a fixed mask that selects N_f - 1 of the massive particles' coordinates
    (``computeSum`` of ``mask * gaussian^2``).  N_f (:func:`thermostat_degrees_of_freedom`) is a global of the
    integrator.  Constraints are applied as in OpenMM's velocity Verlet example (positions, then velocities).
    Being global (one factor for all particles), it leaves transport as in NVE.

    With ``interval`` > 1 the rescaling sits in an ``if`` block on a step counter (a global the host evaluates, so
    the steps between neither sum nor wait for the device); ``interval`` 1 builds the integrator without the block,
    exactly as before the option existed (its checkpoints load).
    """
    import openmm
    from openmm import unit

    from .units import KB

    n_dof = thermostat_degrees_of_freedom(system)
    if n_dof < 2:
        raise ConfigurationError(f"a bussi thermostat needs at least 2 degrees of freedom; the System has {n_dof}")
    if int(interval) != interval or interval < 1:
        raise ConfigurationError(f"interval must be a whole number of steps >= 1, got {interval}")
    interval = int(interval)
    integrator = openmm.CustomIntegrator(timestep * unit.picosecond)
    integrator.addGlobalVariable("kT", KB * temperature)
    integrator.addGlobalVariable("ndf", float(n_dof))
    integrator.addGlobalVariable("c", float(np.exp(-interval * timestep / tau)))
    integrator.addGlobalVariable("ke", 0.0)
    integrator.addGlobalVariable("chi", 0.0)
    integrator.addGlobalVariable("r1", 0.0)
    integrator.addGlobalVariable("alpha", 1.0)
    if interval > 1:
        integrator.addGlobalVariable("interval", float(interval))
        integrator.addGlobalVariable("since", 0.0)  # steps since the last rescaling
    integrator.addPerDofVariable("x1", 0.0)
    integrator.addPerDofVariable("mask", 0.0)
    # velocity Verlet (OpenMM's documented form, with constraints)
    integrator.addUpdateContextState()
    integrator.addComputePerDof("v", "v + 0.5*dt*f/m")
    integrator.addComputePerDof("x", "x + dt*v")
    integrator.addComputePerDof("x1", "x")
    integrator.addConstrainPositions()
    integrator.addComputePerDof("v", "v + 0.5*dt*f/m + (x - x1)/dt")
    integrator.addConstrainVelocities()
    if interval > 1:
        integrator.addComputeGlobal("since", "since + 1")
        integrator.beginIfBlock("since >= interval")
        integrator.addComputeGlobal("since", "0")
    # stochastic velocity rescaling; kt_ratio = K_t / (N_f K) = kT / (2 K)
    integrator.addComputeSum("ke", "0.5*m*v*v")
    integrator.addComputeSum("chi", "mask*gaussian^2")
    integrator.addComputeGlobal("r1", "gaussian")
    integrator.addComputeGlobal(
        "alpha", "select(ke, sqrt(max(0, a2)) * (2*step(r1 + sqrt(c*ndf*ke/((1 - c)*0.5*ndf*kT))) - 1), 1);"
        "a2 = c + (1 - c)*(chi + r1*r1)*kr + 2*r1*sqrt(c*(1 - c)*kr); kr = kT/(2*ke)")
    integrator.addComputePerDof("v", "alpha*v")
    if interval > 1:
        integrator.endBlock()
    mask = np.zeros((system.getNumParticles(), 3))
    massive = np.flatnonzero(system_masses(system) > 0)
    mask[np.asarray(massive, dtype=int)] = 1.0
    flat = mask.reshape(-1)
    flat[np.flatnonzero(flat)[n_dof - 1:]] = 0.0  # exactly N_f - 1 ones
    integrator.setPerDofVariableByName("mask", [openmm.Vec3(*row) for row in flat.reshape(-1, 3)])
    integrator.setRandomNumberSeed(int(seed))
    return integrator

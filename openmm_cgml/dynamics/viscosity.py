"""Shear viscosity by the periodic-perturbation (cosine-acceleration) method in OpenMM.

Hess, J. Chem. Phys. 116, 209 (2002): every particle gets an acceleration a_x(z) = A cos(2 pi z / Lz) along x;
the liquid settles into a velocity profile v_x(z) = V cos(2 pi z / Lz) with

    eta = A rho Lz^2 / (4 pi^2 V)

(rho the mass density).  The viscous heat is removed by a global Nose-Hoover thermostat on all particles (a
local thermostat would damp the flow itself).  OpenMM forces derive from energies, and this field has a curl, so
it is applied by a ``CustomIntegrator`` (velocity Verlet with a Nose-Hoover thermostat) as the x component of a
``CustomExternalForce`` E = -m A x cos(2 pi z / Lz) in its own force group: that component is m A cos(2 pi z / Lz)
exactly, and the other components, which are not part of the method, are never applied.

V is measured every ``sample_interval`` steps as V = 2 sum m v_x cos(2 pi z / Lz) / sum m; its mean is taken
after the equilibration steps, with the larger of a block-average and a statistical-inefficiency standard
error.  The method is valid in the linear (Newtonian) regime only: run two amplitudes (``accelerations``) and
check that eta does not depend on A within errors (:attr:`ViscosityResult.linear`).  The profile's wavelength is the box, so eta is that at wave number
2 pi / Lz, which approaches the macroscopic value from below as the box grows (Hess 2002).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..analysis.statistics import statistical_inefficiency
from ..exceptions import ConfigurationError

__all__ = ["ViscosityEstimate", "ViscosityResult", "periodic_perturbation_viscosity", "viscosity_from_amplitude"]

logger = logging.getLogger(__name__)

#: 1 Da / (nm ps) in Pa s.
_DA_PER_NM_PS_IN_PA_S = 1.66053906660e-27 / (1e-9 * 1e-12)
#: Molar gas constant in kJ/(mol K).
_R_KJ = 8.314462618e-3


@dataclass(frozen=True)
class ViscosityEstimate:
    """eta at one acceleration amplitude.

    Attributes
    ----------
    acceleration : float
        A, nm/ps^2.
    amplitude, amplitude_err : float
        The velocity-profile amplitude V and its standard error, nm/ps: the larger of the block-average error
        and the error from V's statistical inefficiency (pymbar), so that neither a few noisy blocks nor a
        short correlation estimate makes it too small.
    viscosity, viscosity_err : float
        eta and its standard error (from V's), Pa s.
    n_blocks : int
    times, amplitudes : ndarray
        The sampled V(t) (ps, nm/ps), equilibration included.
    mean_temperature : float
        Mean kinetic temperature of the production part, K (flow included).
    """

    acceleration: float
    amplitude: float
    amplitude_err: float
    viscosity: float
    viscosity_err: float
    n_blocks: int
    times: np.ndarray
    amplitudes: np.ndarray
    mean_temperature: float


@dataclass(frozen=True)
class ViscosityResult:
    """eta from one or more amplitudes: the error-weighted mean and the linear-regime check.

    ``linear`` is True when every pair of amplitudes gives eta within 3 combined standard errors (2 fails a
    linear pair about one time in twenty by chance), False when not
    (A too large: shear thinning, or heating), and None with a single amplitude (not checked).
    """

    viscosity: float
    viscosity_err: float
    estimates: tuple[ViscosityEstimate, ...]
    linear: bool | None
    density: float
    box_length_z: float

    @property
    def viscosity_mpa_s(self) -> float:
        return self.viscosity * 1e3

    def as_string(self) -> str:
        """``"0.512 mPa*s"``, as the compare configuration's ``viscosity`` accepts it."""
        return f"{self.viscosity_mpa_s:.6g} mPa*s"


def viscosity_from_amplitude(acceleration: float, density: float, length_z: float, amplitude: float) -> float:
    """eta = A rho Lz^2 / (4 pi^2 V), Pa s, from A (nm/ps^2), rho (Da/nm^3), Lz (nm) and V (nm/ps)."""
    if amplitude <= 0:
        raise ConfigurationError(f"the velocity-profile amplitude must be positive (it follows A), got {amplitude} "
                                 "nm/ps: the run is too short or A too small for the thermal noise")
    return acceleration * density * length_z**2 / (4 * math.pi**2 * amplitude) * _DA_PER_NM_PS_IN_PA_S


def _integrator(openmm, temperature: float, timestep: float, collision_frequency: float, n_dof: int,
                group: int):
    """Velocity Verlet with a Nose-Hoover thermostat (one chain element), the cosine acceleration from
    force group ``group`` applied along x only."""
    kt = _R_KJ * temperature
    tau = 1.0 / collision_frequency
    integ = openmm.CustomIntegrator(timestep)
    integ.addGlobalVariable("kT", kt)
    integ.addGlobalVariable("nf", float(n_dof))
    integ.addGlobalVariable("Q", n_dof * kt * tau**2)
    integ.addGlobalVariable("zeta", 0.0)
    integ.addGlobalVariable("ke2", 0.0)
    integ.addPerDofVariable("ex", 0.0)
    integ.addPerDofVariable("x1", 0.0)

    def _half_thermostat():
        integ.addComputeSum("ke2", "m*v*v")
        integ.addComputeGlobal("zeta", "zeta + 0.5*dt*(ke2 - nf*kT)/Q")
        integ.addComputePerDof("v", "v*exp(-0.5*dt*zeta)")

    integ.addUpdateContextState()
    _half_thermostat()
    # all forces, then the cosine field's y and z components taken out again (one force group per step)
    integ.addComputePerDof("v", "v + 0.5*dt*f/m")
    integ.addComputePerDof("v", f"v + 0.5*dt*(ex - 1)*f{group}/m")
    integ.addComputePerDof("x", "x + dt*v")
    integ.addComputePerDof("x1", "x")
    integ.addConstrainPositions()
    integ.addComputePerDof("v", "v + 0.5*dt*f/m + (x - x1)/dt")
    integ.addComputePerDof("v", f"v + 0.5*dt*(ex - 1)*f{group}/m")
    integ.addConstrainVelocities()
    _half_thermostat()
    return integ


def periodic_perturbation_viscosity(system, positions, *, temperature, accelerations=(0.05, 0.025),
                                    timestep=0.002, equilibration_steps: int = 5000, production_steps: int = 50000,
                                    sample_interval: int = 10, collision_frequency: float = 2.0, n_blocks: int = 20,
                                    platform: str | None = None, seed: int = 0) -> ViscosityResult:
    """Shear viscosity of an OpenMM ``system`` by the periodic-perturbation method (module docstring).

    Parameters
    ----------
    system : openmm.System
        Periodic, at constant volume (a barostat is refused; equilibrate the density first).  Its own
        thermostat forces (``AndersenThermostat``) are refused too; a ``CMMotionRemover`` is kept.  Not modified.
    positions : array (n, 3), nm, or OpenMM positions; the box is the system's default box.
    temperature : float (K) or unit string
    accelerations : sequence of float, nm/ps^2
        Amplitudes A; two or more check the linear regime.  Choose them so that the profile amplitude V is a
        few times the thermal noise sqrt(2 kT / (m N)) but the shear rate 2 pi V / Lz stays well below the
        inverse molecular relaxation time.
    timestep : float, ps
    equilibration_steps, production_steps, sample_interval : int
        Steps to reach the steady profile (several rho Lz^2 / (4 pi^2 eta)), steps sampled, and steps between
        samples of V.
    collision_frequency : float, 1/ps
        Of the Nose-Hoover thermostat.
    n_blocks : int
        Blocks for the block-average standard error of V (the error reported is the larger of that and the
        statistical-inefficiency error).
    platform : str, optional
        OpenMM platform name (default: ``auto``'s choice, :func:`~openmm_cgml.reference.choose_platform`).
    """
    import openmm
    from openmm import unit as u

    from ..units import system_masses, to_md

    temp = to_md(temperature, "temperature", name="temperature")
    accelerations = [float(a) for a in np.atleast_1d(accelerations)]
    if not accelerations or min(accelerations) <= 0:
        raise ConfigurationError(f"accelerations must be positive numbers (nm/ps^2), got {accelerations}")
    if n_blocks < 2 or production_steps // sample_interval < 2 * n_blocks:
        raise ConfigurationError(f"need n_blocks >= 2 and at least 2 samples per block; got n_blocks={n_blocks}, "
                                 f"{production_steps // sample_interval} samples")
    if not system.usesPeriodicBoundaryConditions():
        raise ConfigurationError("the periodic-perturbation viscosity needs a periodic system")
    system = openmm.XmlSerializer.clone(system) if hasattr(openmm.XmlSerializer, "clone") else \
        openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    names = [system.getForce(i).__class__.__name__ for i in range(system.getNumForces())]
    for bad in ("MonteCarloBarostat", "MonteCarloAnisotropicBarostat", "MonteCarloFlexibleBarostat",
                "MonteCarloMembraneBarostat", "AndersenThermostat"):
        if bad in names:
            raise ConfigurationError(f"the system has a {bad}: the periodic-perturbation viscosity runs at constant "
                                     "volume under its own global thermostat; remove it")
    used_groups = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
    group = max(g for g in range(32) if g not in used_groups)
    n = system.getNumParticles()
    masses = system_masses(system)
    box = np.array([v.value_in_unit(u.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    if np.count_nonzero(box - np.diag(np.diag(box))):
        raise ConfigurationError("the periodic-perturbation viscosity needs a rectangular box")
    lz = float(box[2, 2])
    density = float(masses.sum() / np.prod(np.diag(box)))  # Da/nm^3
    n_dof = 3 * int(np.count_nonzero(masses)) - system.getNumConstraints() - (3 if "CMMotionRemover" in names else 0)
    force = openmm.CustomExternalForce(f"-mass*A*x*cos(6.283185307179586*z/{lz!r})")
    force.addGlobalParameter("A", 0.0)
    force.addPerParticleParameter("mass")
    for i in range(n):
        if masses[i] > 0:
            force.addParticle(i, [masses[i]])
    force.setForceGroup(group)
    system.addForce(force)
    integ = _integrator(openmm, temp, float(timestep), float(collision_frequency), n_dof, group)
    integ.setPerDofVariableByName("ex", [openmm.Vec3(1.0, 0.0, 0.0)] * n)
    from ..reference.run import choose_platform

    context = openmm.Context(system, integ, choose_platform("auto" if platform is None else platform))
    k = 2 * math.pi / lz
    estimates = []
    for a in accelerations:
        context.setPositions(positions)
        context.setParameter("A", a)
        context.setVelocitiesToTemperature(temp * u.kelvin, seed)
        integ.setGlobalVariableByName("zeta", 0.0)
        n_samples = (equilibration_steps + production_steps) // sample_interval
        n_eq = equilibration_steps // sample_interval
        amps, kin = np.empty(n_samples), np.empty(n_samples)
        for s in range(n_samples):
            integ.step(sample_interval)
            state = context.getState(getPositions=True, getVelocities=True)
            x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
            v = state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)
            amps[s] = 2.0 * np.sum(masses * v[:, 0] * np.cos(k * x[:, 2])) / masses.sum()
            kin[s] = np.sum(masses[:, None] * v * v)
        times = np.arange(1, n_samples + 1) * sample_interval * float(timestep)
        prod = amps[n_eq:]
        means = np.array([b.mean() for b in np.array_split(prod, n_blocks)])
        g = max(1.0, statistical_inefficiency(prod))
        v_mean = float(prod.mean())
        v_err = max(float(means.std(ddof=1) / np.sqrt(n_blocks)), float(prod.std(ddof=1) * np.sqrt(g / prod.size)))
        eta = viscosity_from_amplitude(a, density, lz, v_mean)
        estimates.append(ViscosityEstimate(acceleration=a, amplitude=v_mean, amplitude_err=v_err, viscosity=eta,
                                           viscosity_err=eta * v_err / v_mean, n_blocks=n_blocks, times=times,
                                           amplitudes=amps, mean_temperature=float(kin[n_eq:].mean() / (n_dof * _R_KJ))))
        logger.info("periodic perturbation A = %g nm/ps^2: V = %.4g +/- %.2g nm/ps, eta = %.4g +/- %.2g mPa s",
                    a, v_mean, v_err, eta * 1e3, eta * v_err / v_mean * 1e3)
    del context, integ
    etas = np.array([e.viscosity for e in estimates])
    errs = np.array([e.viscosity_err for e in estimates])
    w = 1.0 / errs**2
    eta, err = float(np.sum(w * etas) / w.sum()), float(1.0 / np.sqrt(w.sum()))
    linear = None
    if len(estimates) > 1:
        linear = all(abs(etas[i] - etas[j]) < 3 * math.hypot(errs[i], errs[j])
                     for i in range(len(etas)) for j in range(i + 1, len(etas)))
        if not linear:
            logger.warning("the viscosity depends on the acceleration amplitude (%s mPa s at A = %s nm/ps^2): A is "
                           "outside the linear regime; use smaller amplitudes and longer runs",
                           np.round(etas * 1e3, 4).tolist(), accelerations)
    return ViscosityResult(viscosity=eta, viscosity_err=err, estimates=tuple(estimates), linear=linear,
                           density=density, box_length_z=lz)

"""Build OpenMM forces from :class:`~openmm_cgml.forcespec.ForceSpec` descriptions."""

from __future__ import annotations

from ..exceptions import ConfigurationError
from ..forcespec import ForceSpec, TabulatedFunctionSpec

__all__ = ["build_force", "tabulated_function"]


def tabulated_function(spec: TabulatedFunctionSpec):
    """The OpenMM tabulated function of ``spec``."""
    import openmm

    values = [float(v) for v in spec.values]
    if spec.kind == "discrete1d":
        return openmm.Discrete1DFunction(values)
    if spec.kind == "discrete2d":
        return openmm.Discrete2DFunction(int(spec.shape[0]), int(spec.shape[1]), values)
    if spec.kind == "continuous1d":
        lo, hi = spec.bounds
        return openmm.Continuous1DFunction(values, float(lo), float(hi), bool(spec.periodic))
    if spec.kind == "continuous2d":
        xlo, xhi, ylo, yhi = spec.bounds
        return openmm.Continuous2DFunction(int(spec.shape[0]), int(spec.shape[1]), values, float(xlo), float(xhi),
                                           float(ylo), float(yhi), bool(spec.periodic))
    raise ConfigurationError(f"unknown tabulated function kind {spec.kind!r}")


def build_force(spec: ForceSpec):
    """A new OpenMM custom force equal to ``spec`` (named ``spec.name`` when it has one)."""
    import openmm

    if spec.kind == "nonbonded":
        force = openmm.CustomNonbondedForce(spec.energy)
        for p in spec.parameters:
            force.addPerParticleParameter(p)
        for _, values in spec.items:
            force.addParticle([float(v) for v in values])
        for i, j in spec.exclusions:
            force.addExclusion(int(i), int(j))
        force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic if spec.periodic
                                 else openmm.CustomNonbondedForce.CutoffNonPeriodic)
        force.setCutoffDistance(float(spec.cutoff))
        force.setUseLongRangeCorrection(False)
    else:
        if spec.kind == "bond":
            force = openmm.CustomBondForce(spec.energy)
            add_parameter, add_item = force.addPerBondParameter, force.addBond
        elif spec.kind == "angle":
            force = openmm.CustomAngleForce(spec.energy)
            add_parameter, add_item = force.addPerAngleParameter, force.addAngle
        elif spec.kind == "torsion":
            force = openmm.CustomTorsionForce(spec.energy)
            add_parameter, add_item = force.addPerTorsionParameter, force.addTorsion
        else:  # compound
            force = openmm.CustomCompoundBondForce(int(spec.n_particles), spec.energy)
            add_parameter = force.addPerBondParameter

            def add_item(*args):
                force.addBond([int(a) for a in args[:-1]], args[-1])

        for p in spec.parameters:
            add_parameter(p)
        for atoms, values in spec.items:
            add_item(*(int(a) for a in atoms), [float(v) for v in values])
        force.setUsesPeriodicBoundaryConditions(bool(spec.periodic))
    for name, value in spec.global_parameters.items():
        force.addGlobalParameter(name, float(value))
    for name, fn in spec.functions.items():
        force.addTabulatedFunction(name, tabulated_function(fn))
    if spec.name:
        force.setName(spec.name)
    return force

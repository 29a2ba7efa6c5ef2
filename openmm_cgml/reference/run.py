"""Run an all-atom reference simulation and record it, with checkpoint and resume.

The run goes through stages: ``minimize`` -> ``nvt`` -> ``npt`` -> ``production`` -> ``done``.
Everything needed to continue is kept beside the output dataset ``X.h5``:

- ``X.system.xml``: the serialized OpenMM System (written once, atomically),
- ``X.pdb``: the packed starting structure (for people and viewers),
- ``X.h5.chk``: the checkpoint (stage, frames written, OpenMM checkpoint or state,
  configuration), replaced atomically at every checkpoint.

Within a stage, the OpenMM checkpoint (integrator and random-number state included)
makes a resumed run continue exactly as an uninterrupted one on the same platform.
The dataset is flushed before each checkpoint; on resume it is truncated to the frames
the checkpoint vouches for, so a crash never leaves gaps or duplicated frames.

Rerunning resumes by default; what happens with ``resume`` / ``overwrite`` and the checkpoint found is the
policy of :func:`openmm_cgml._checkpoint.resume_or_start`.  Every seed (packing, velocities, thermostat,
barostat) comes from ``seed``; whether two runs are bit-identical depends on the platform (see
:class:`ReferenceConfig`'s ``threads``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from .._checkpoint import identity_hash, json_ready, resume_or_start, write_checkpoint
from .._io import atomic_path, atomic_write_text, check_writable, machine_info, package_versions
from .._safety import deserialize_openmm_xml, load_openmm_xml
from ..config import Density, Duration, Friction, Mass, PositiveLength, Pressure, StrictModel, Temperature, Timestep
from ..dataset import TrajectoryWriter, open_h5, read_header, topology_from_data, topology_to_data
from ..exceptions import CheckpointError, ConfigurationError, CorruptFileError, DatasetError
from ..thermostat import TRANSPORT_DEFAULT, Thermostat, integrator_name, make_integrator
from ..units import system_masses
from .liquid import DENSITY_RANGE
from .reporter import DatasetReporter

__all__ = ["ComponentConfig", "ForceFieldParameter", "ReferenceConfig", "ReferenceResult", "run_reference", "choose_platform",
           "platform_properties", "repartition_hydrogen_mass"]

logger = logging.getLogger(__name__)

STAGES = ("minimize", "nvt", "npt", "production", "done")


class ComponentConfig(StrictModel):
    """One species: SMILES, count, an optional residue name, and optionally its partial charges.

    ``partial_charges`` (elementary charges) replace the ``charge_method`` for this component: a list with one
    charge per atom, in the atom order of ``openff.toolkit.Molecule.from_smiles(smiles)`` (the atoms written in
    the SMILES, in their order, explicit ``[H]`` atoms included; then the implicit hydrogens, heavy atom by heavy
    atom in SMILES order), or a mapping from element symbol to the charge of every atom of that element
    (``{P: 1.34, F: -0.39}``).  They must sum to the molecule's formal charge within 0.001 e, and need
    ``charges_source``.  ``charge_scale`` multiplies the component's charges, however they were obtained.
    The charges are checked against the molecule when the OpenFF toolkit is installed (else when the liquid is
    built): :func:`openmm_cgml.reference.liquid.explicit_charges`.
    """

    smiles: str
    count: int = Field(gt=0)
    name: str | None = None
    partial_charges: list[float] | dict[str, float] | None = Field(
        default=None, description="explicit partial charges (e) instead of charge_method: one per atom in "
        "Molecule.from_smiles order (SMILES atoms, then implicit hydrogens), or {element: charge}; must sum to "
        "the formal charge")
    charges_source: str | None = Field(
        default=None, description="the literature or force field partial_charges come from (required with "
        "them; recorded in the dataset)")
    charge_scale: float = Field(
        default=1.0, description="factor in (0, 1] on this component's partial charges, however obtained (0.8: "
        "scaled ionic charges; scale every ion alike)")

    @field_validator("partial_charges", mode="before")
    @classmethod
    def _charges_shape(cls, value):
        if value is None or isinstance(value, (list, dict)):
            return value
        raise ValueError(f"expected a list of charges in e, one per atom, or a mapping from element symbol to "
                         f"charge (e.g. {{P: 1.34, F: -0.39}}), got {value!r}")

    @model_validator(mode="after")
    def _check_charges(self):
        from .liquid import check_charge_options, explicit_charges, molecule_if_available

        charges = check_charge_options(self.smiles, self.partial_charges, self.charges_source, self.charge_scale,
                                       name=self.name)
        if charges is not None:
            molecule = molecule_if_available(self.smiles)
            if molecule is not None:
                explicit_charges(molecule, charges, name=self.name)
        return self

    def component(self):
        """The :class:`openmm_cgml.reference.liquid.Component` that builds this species."""
        from .liquid import Component

        return Component(self.smiles, self.count, self.name, partial_charges=self.partial_charges,
                         charges_source=self.charges_source, charge_scale=self.charge_scale)


class ForceFieldParameter(StrictModel):
    """A force-field parameter changed before the System is created
    (:func:`openmm_cgml.reference.liquid.set_forcefield_parameters`)."""

    handler: str = Field(description="OpenFF parameter handler: Bonds | Angles | ProperTorsions | vdW | ...")
    smirks: str = Field(description="SMIRKS of the parameter in the force field")
    attribute: str = Field(description="k | length | angle | k1 | epsilon | sigma | ...")
    value: str = Field(description="the new value with its unit, e.g. '250000 kJ/mol/nm**2'")


class ReferenceConfig(StrictModel):
    """Configuration of an all-atom reference run (YAML keys; quantities with units).

    Times (``nvt``, ``npt``, ``production``, ``report_interval``, ``checkpoint_interval``)
    must be whole multiples of ``timestep``; the checkpoint interval a multiple of the
    report interval.

    ``seed`` fixes every random choice (packmol's packing, the initial velocities, the thermostat's and the
    barostat's random numbers).  ``threads`` is the number of CPU threads of the ``CPU`` platform (None: OpenMM's
    default, every core or ``OPENMM_CPU_THREADS``); forces are always computed with OpenMM's
    ``DeterministicForces`` where the platform has it.  On the ``CPU`` platform only ``threads: 1`` makes two runs
    of the same configuration bit-identical from one process to the next: with more threads OpenMM's
    direct-space nonbonded kernel hands blocks of atoms to threads dynamically, so single-precision forces
    are summed in a varying order, and rounding differences of ~1e-5 kJ/mol/nm grow through the minimisation
    and the chaotic dynamics until frames differ (statistically equivalent runs).  ``Reference`` is always
    bit-reproducible.  ``threads`` may change when a run resumes (it is not part of the checkpoint's identity).

    ``thermostat`` is the production's (default: Bussi's stochastic velocity rescaling, tau 1 ps, which leaves
    diffusion as in NVE, so D and alpha measured on the run hold); the ``nvt`` and ``npt`` equilibration run under
    Langevin dynamics at ``friction`` (as every stage did before ``thermostat`` existed).  A checkpoint written
    before then resumes with its production under Langevin at ``friction``, as it was started.
    """

    components: list[ComponentConfig] = Field(min_length=1)
    density: Density | None = None
    box_length: PositiveLength | None = None
    packing_density: Density | None = Field(
        default=None, description="pack the molecules at this lower density and compress them to the liquid's box "
        "before the NVT stage (long chains, a polymer melt, do not pack rigidly at melt density); needs minimize")
    forcefield: str = "openff-2.2.0"
    extra_forcefields: list[Path] = Field(
        default_factory=list, description="OpenFF .offxml files layered on the force field (parameters it lacks, "
        "e.g. for an ion such as BF4-, which Sage does not type)")
    forcefield_parameters: list[ForceFieldParameter] = Field(
        default_factory=list, description="force-field parameters changed before the System is created (a "
        "parameter sweep's sample): [{handler, smirks, attribute, value}]")
    charge_method: Literal["am1bcc", "gasteiger", "mmff94", "zeros"] = "am1bcc"
    cutoff: PositiveLength | None = None
    temperature: Temperature = "298.15 K"
    pressure: Pressure = "1 bar"
    timestep: Timestep = "2 fs"
    hydrogen_mass: Mass | None = Field(
        default=None, description="hydrogen mass repartitioning: every hydrogen gets this mass, taken from the "
        "heavy atom it is bonded to (molecules keep their masses; e.g. '3 Da' with a 4 fs timestep).  Structure "
        "is unchanged; dynamics are slightly slower, so D and alpha from such a run are flagged.  The dataset "
        "records the physical masses")
    start_conformations: Literal["conformer", "unperturbed"] = Field(
        default="conformer", description="how the packed molecules start: 'conformer', rigid copies of one "
        "conformer; 'unperturbed', each its own conformation from the molecule's unperturbed ensemble at the "
        "run's temperature (vacuum dynamics with nonbonded pairs only a few bonds apart), which a chain has in "
        "its melt (Flory): a polymer melt starts with relaxed chain dimensions")
    friction: Friction = "1 /ps"
    thermostat: Thermostat = TRANSPORT_DEFAULT
    barostat_interval: int = Field(default=25, gt=0)
    minimize: bool = True
    nvt: Duration = "10 ps"
    npt: Duration = "50 ps"
    production: Duration = "100 ps"
    max_production: Duration | None = None
    extend_until: Literal["diffusive", "block-error"] = Field(
        default="diffusive", description="what max_production extends the production for: a diffusive molecular "
        "MSD, or also a block error of D (the diffusive window fits into at least 3 blocks of the run: an error "
        "that covers run-to-run spread, where a single run's error over molecules alone can be too small; "
        "several times longer)")
    production_ensemble: Literal["nvt", "npt"] = "nvt"
    report_interval: Duration = "1 ps"
    checkpoint_interval: Duration = "10 ps"
    fields: list[Literal["positions", "velocities", "forces"]] = ["positions", "velocities", "forces"]
    precision: Literal["single", "double"] = "single"
    platform: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if (self.density is None) == (self.box_length is None):
            raise ValueError("give exactly one of density and box_length")
        if self.density is not None and not DENSITY_RANGE[0] <= self.density <= DENSITY_RANGE[1]:
            raise ValueError(f"density {self.density:g} g/cm^3 is not a liquid density; expected between "
                             f"{DENSITY_RANGE[0]} and {DENSITY_RANGE[1]} g/cm^3")
        if self.packing_density is not None:
            if self.density is not None and self.packing_density >= self.density:
                raise ValueError(f"packing_density ({self.packing_density:g} g/cm^3) must be below density "
                                 f"({self.density:g} g/cm^3): the molecules are packed in a larger box and compressed")
            if not self.minimize:
                raise ValueError("packing_density compresses the packed box in the minimize stage: it needs "
                                 "minimize: true")
        for name in ("nvt", "npt", "production", "report_interval", "checkpoint_interval"):
            self.steps(name)
        if self.max_production is not None:
            if self.steps("max_production") < self.steps("production"):
                raise ValueError(f"max_production ({self.max_production:g} ps) must be at least production "
                                 f"({self.production:g} ps)")
            if self.steps("production") < 1:
                raise ValueError("max_production extends a production run: production must be longer than 0 ps")
        if self.steps("report_interval") < 1:
            raise ValueError("report_interval must be at least one timestep")
        if self.steps("checkpoint_interval") % self.steps("report_interval"):
            raise ValueError("checkpoint_interval must be a whole multiple of report_interval")
        if self.hydrogen_mass is not None and not 1.0 < self.hydrogen_mass <= 5.0:
            raise ValueError(f"hydrogen_mass {self.hydrogen_mass:g} Da is outside (1, 5] Da: repartitioning gives "
                             "hydrogens a mass between their own (1.008 Da) and a few Da (3-4 Da allows a 4 fs timestep)")
        if "positions" not in self.fields:
            raise ValueError("fields must include positions")
        if self.thermostat.kind == "nve" and self.production_ensemble == "npt":
            raise ValueError("thermostat: an NPT production needs a thermostat (the barostat samples at a "
                             "temperature); use kind bussi or nose-hoover, or production_ensemble: nvt")
        return self

    def steps(self, name: str) -> int:
        """The duration ``name`` as a whole number of timesteps."""
        value = getattr(self, name)
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value} ps")
        n = value / self.timestep
        if abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ValueError(f"{name} ({value} ps) is not a whole number of timesteps of {self.timestep} ps")
        return int(round(n))


@dataclass(frozen=True)
class ReferenceResult:
    """Where a reference run put its files, and what it measured."""

    dataset: Path
    system_xml: Path
    pdb: Path
    checkpoint: Path
    n_frames: int
    npt_density: float | None
    npt_density_std: float | None
    ns_per_day: float | None


def choose_platform(name: str = "auto"):
    """Return an OpenMM Platform: ``"auto"`` picks the fastest installed (CUDA > OpenCL > CPU > Reference), where
    OpenCL counts only on a GPU: an OpenCL runtime that runs on the CPU (pocl, which Linux distributions and
    conda-forge install as a dependency of other packages) is slower there than OpenMM's CPU platform, so ``auto``
    skips it (name ``OpenCL`` to use it anyway)."""
    import openmm

    available = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name == "auto":
        for cand in ("CUDA", "OpenCL", "CPU", "Reference"):
            if cand in available and not (cand == "OpenCL" and opencl_runs_on_cpu()):
                return openmm.Platform.getPlatformByName(cand)
    if name not in available:
        raise ConfigurationError(f"unknown or unavailable OpenMM platform {name!r}; available: {', '.join(available)}")
    return openmm.Platform.getPlatformByName(name)


@functools.cache
def opencl_runs_on_cpu() -> bool:
    """Whether OpenMM's OpenCL platform runs on a CPU device (pocl, Intel's CPU runtime): the names of the platform
    and device it picks for a one-particle Context (probed once per process).  A platform that cannot make a Context
    counts as on the CPU (unusable for ``auto`` either way)."""
    import openmm

    try:
        platform = openmm.Platform.getPlatformByName("OpenCL")
        system = openmm.System()
        system.addParticle(1.0)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform)
    except Exception as exc:  # noqa: BLE001 - any failure to create a context: not a usable GPU platform
        logger.info("the OpenCL platform cannot create a context (%s): auto skips it", exc)
        return True
    names = set(platform.getPropertyNames())
    text = " ".join(platform.getPropertyValue(context, key) for key in
                    ("OpenCLPlatformName", "DeviceName", "OpenCLDeviceName") if key in names)
    del context
    return opencl_names_say_cpu(text)


def opencl_names_say_cpu(text: str) -> bool:
    """Whether an OpenCL platform and device description (names joined by spaces) is a CPU runtime."""
    low = text.lower()
    return "portable computing language" in low or "pocl" in low or re.search(r"\bcpu\b", low) is not None


def platform_properties(platform, threads: int | None = None) -> dict[str, str]:
    """OpenMM platform properties of a reproducible run: ``DeterministicForces`` wherever the platform has it,
    and ``Threads`` (CPU) if ``threads`` is given."""
    names = set(platform.getPropertyNames())
    props = {"DeterministicForces": "true"} if "DeterministicForces" in names else {}
    if threads is not None and "Threads" in names:
        props["Threads"] = str(int(threads))
    return props


def _move_checkpoint(sim, payload: bytes, written_on: str, allowed: bool, path: Path) -> None:
    """Resume ``sim`` from a binary OpenMM checkpoint that platform ``written_on`` wrote: load it in a context of
    that platform and carry the state (positions, velocities, box, step, time) over.  Only when ``allowed``
    (``portable_checkpoints``: the caller accepts fresh random streams)."""
    import openmm

    here = sim.context.getPlatform().getName()
    if not allowed:
        raise CheckpointError(f"the checkpoint {path} was written on the {written_on} platform and this run uses "
                              f"{here}: resume it on {written_on}, or with portable_checkpoints=True (its state moves "
                              "over; the thermostat's random stream starts afresh, so the resume is statistically "
                              "equivalent, not bit-identical)")
    try:
        source = openmm.Platform.getPlatformByName(written_on)
    except openmm.OpenMMException:
        raise CheckpointError(f"the checkpoint {path} was written on the {written_on} platform, which this machine "
                              f"lacks ({here} here): resume it where {written_on} is, and write portable checkpoints "
                              "there (State XML) to move the run") from None
    integrator = openmm.XmlSerializer.clone(sim.integrator)
    context = openmm.Context(sim.context.getSystem(), integrator, source)
    try:
        context.loadCheckpoint(payload)
        state = context.getState(getPositions=True, getVelocities=True, getParameters=True)
    finally:
        del context, integrator
    sim.context.setState(state)
    sim.context.setStepCount(state.getStepCount())
    logger.info("resumed %s, written on %s, on %s: the state moved over (statistically equivalent, not "
                "bit-identical)", path, written_on, here)


# --------------------------------------------------------------------------------------
# Checkpoint identity: the configuration, but for settings that may change on resume
# --------------------------------------------------------------------------------------
def _identity(config: ReferenceConfig) -> dict[str, Any]:
    data = config.to_data()
    data.pop("threads", None)  # an OpenMM CPU checkpoint loads with any thread count
    data.pop("max_production", None)  # a budget: raising it extends a finished run
    if data.get("packing_density") is None:
        data.pop("packing_density", None)  # packed at the liquid's density: as in checkpoints from before the key
    if data.get("hydrogen_mass") is None:
        data.pop("hydrogen_mass", None)  # physical masses: as in checkpoints from before the key
    if data.get("start_conformations") == "conformer":
        data.pop("start_conformations", None)  # rigid copies of one conformer: as in checkpoints from before the key
    data.pop("extend_until", None)  # what the budget is spent on: asking for a block error extends a finished run
    if not data.get("forcefield_parameters"):
        data.pop("forcefield_parameters", None)  # the force field as published: checkpoints from before the key
    if not data.get("extra_forcefields"):
        data.pop("extra_forcefields", None)  # nothing layered on it: as in checkpoints from before the key
    # components without explicit or scaled charges: as in checkpoints written before these keys existed
    defaults = {"partial_charges": None, "charges_source": None, "charge_scale": 1.0}
    data["components"] = [{k: v for k, v in c.items() if not (k in defaults and v == defaults[k])}
                          for c in data["components"]]
    return data


def _legacy_identity(path: Path, config: ReferenceConfig) -> dict[str, Any] | None:
    """The identity of a checkpoint at ``path`` written before ``thermostat`` existed, if it is that of
    ``config`` without the key (and ``config`` does not set ``thermostat`` explicitly), else None."""
    from .._checkpoint import read_checkpoint

    if "thermostat" in config.model_fields_set or not path.exists():
        return None
    try:
        header, _ = read_checkpoint(path)
    except Exception:  # resume_or_start reports a corrupt checkpoint
        return None
    legacy = {k: v for k, v in _identity(config).items() if k != "thermostat"}
    stored = header.get("identity_data")
    if isinstance(stored, dict) and "thermostat" in stored:
        return None
    return legacy if identity_hash(legacy) in (header.get("identity"), header.get("config_key")) else None


def _legacy_thermostat(config: ReferenceConfig) -> Thermostat:
    """The thermostat of the equilibration, and of productions started before ``thermostat`` existed: Langevin
    at ``friction`` (none at friction 0, which LangevinMiddleIntegrator integrated as velocity Verlet)."""
    return Thermostat(kind="langevin", friction=f"{config.friction!r} /ps") if config.friction > 0 else \
        Thermostat(kind="nve")


# --------------------------------------------------------------------------------------
def run_reference(
    config: ReferenceConfig | dict,
    output,
    *,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    reporters: list | None = None,
    diffusion_check=None,
    prepare_only: bool = False,
    portable_checkpoints: bool = False,
) -> ReferenceResult:
    """Build the liquid of ``config``, equilibrate it and record a production run to ``output``.

    Parameters
    ----------
    config : ReferenceConfig or dict
        The run (see :class:`ReferenceConfig`).
    output : path-like
        The dataset file (``.h5``).  Side files share its name (see module docs).
    resume : bool
        Continue from ``<output>.chk`` if it exists (the default).  The checkpoint must
        come from the same configuration (but ``threads``).  False: start fresh, but refuse
        to replace an existing checkpoint unless ``overwrite``.
    overwrite : bool
        Start afresh even if ``output`` or a checkpoint exists (they are replaced).
    progress : bool
        Show a progress bar.
    reporters : list, optional
        Extra OpenMM reporters attached during production (e.g. a ``StateDataReporter``).
    diffusion_check : callable, optional
        With ``max_production``: called with the dataset's path after the production (and after each
        extension); returns a mapping with ``converged`` (bool) and ``reason`` (and any other JSON-ready
        diagnostics).  While it is not converged, the production doubles (up to ``max_production``); every
        check is recorded in the dataset's metadata (``diffusion_checks``).  The workflow
        :func:`openmm_cgml.workflows.run_reference` (and ``cgml reference``) passes the molecular
        centre-of-mass MSD check of :func:`openmm_cgml.analysis.diffusion_check`.
    prepare_only : bool
        Build the liquid and minimise it (the steps that need OpenFF and its charge engine), write the checkpoint,
        and return (``n_frames`` 0, no dataset).  A later call with the same configuration resumes from that
        checkpoint on any machine with OpenMM and this package, OpenFF not needed (a GPU node, say): copy the
        output's side files (``.chk``, ``.system.xml``, ``.pdb``) along.  A run already past minimisation is left
        as it is.
    portable_checkpoints : bool
        Write the checkpoints as OpenMM State XML (positions, velocities, box, step and time) instead of the
        platform's binary checkpoint, so that a run stopped on one platform (a GPU) resumes on another (the CPU).
        Such a resume is statistically equivalent, not bit-identical: the thermostat's and the barostat's random
        streams start afresh.  Any checkpoint resumes with either setting, on the platform that wrote it; with
        ``portable_checkpoints`` also a binary checkpoint of another platform, if that platform is available here (its
        state is read there and moved over; statistically equivalent again).

    Returns
    -------
    ReferenceResult

    Raises
    ------
    DatasetError
        If ``output`` is not writable, or exists (without a checkpoint) and ``overwrite`` is False.
    CheckpointError
        If the checkpoint is corrupt or belongs to another configuration (the message names the settings that
        differ), or exists while ``resume`` is False, and ``overwrite`` is False.
    SimulationError
        If the simulation produces NaN energies or forces.
    """
    import openmm
    from openmm import XmlSerializer, app, unit

    if not isinstance(config, ReferenceConfig):
        config = ReferenceConfig.from_data(dict(config))
    max_steps = config.steps("max_production") if config.max_production is not None else None
    if max_steps is not None and diffusion_check is None:
        raise ConfigurationError("max_production extends the production until diffusion is converged, which needs "
                                 "a diffusion check: run through openmm_cgml.workflows.run_reference (or cgml "
                                 "reference), or pass diffusion_check")
    output = check_writable(output)
    paths = {
        "ckpt": Path(str(output) + ".chk"),
        "xml": output.with_suffix(".system.xml"),
        "pdb": output.with_suffix(".pdb"),
    }
    identity = _identity(config)
    legacy = _legacy_identity(paths["ckpt"], config)
    if legacy is not None:
        identity = legacy
        logger.warning("resuming %s, written before the production thermostat was configurable: its production "
                       "runs under Langevin dynamics at %g /ps, as it was started (D and alpha from it are damped); "
                       "pass --overwrite (overwrite=True) to rerun it with %s", paths["ckpt"], config.friction,
                       config.thermostat.kind)
    production_thermostat = _legacy_thermostat(config) if legacy is not None else config.thermostat
    equilibration_thermostat = _legacy_thermostat(config)
    key = identity_hash(identity)
    header: dict[str, Any] | None = None
    payload = b""
    found = resume_or_start(paths["ckpt"], identity, resume=resume, overwrite=overwrite, what="reference run",
                            key=key)
    if found is not None:
        header, payload = found
        if not paths["xml"].exists():
            raise CheckpointError(f"cannot resume from {paths['ckpt']}: {paths['xml']} (the System) is missing; "
                                  "pass --overwrite (overwrite=True) to start again")
        target_steps = int(header.get("production_target_steps", config.steps("production")))
        n_total = target_steps // config.steps("report_interval") + 1
        logger.info("resumed from stage %s, %d of %d frames%s (checkpoint %s)", header["stage"], header["n_frames"],
                    n_total, " (production extended while diffusion is not converged)"
                    if target_steps > config.steps("production") else "", paths["ckpt"])
    elif output.exists() and not overwrite:
        raise DatasetError(
            f"{output} already exists and has no checkpoint to resume from; pass overwrite=True "
            "(--overwrite) to replace it or choose another output path"
        )

    if header is None:
        from .liquid import build_liquid

        liquid = build_liquid(
            [c.component() for c in config.components],
            density=config.density, box_length=config.box_length, forcefield=config.forcefield,
            extra_forcefields=config.extra_forcefields, charge_method=config.charge_method, cutoff=config.cutoff, seed=config.seed, progress=progress,
            parameters=[p.to_data() for p in config.forcefield_parameters], packing_density=config.packing_density,
            start_conformations=config.start_conformations, temperature=config.temperature,
        )
        system = liquid.system
        masses = system_masses(system)
        if config.hydrogen_mass is not None:
            repartition_hydrogen_mass(system, liquid.topology, config.hydrogen_mass)
        atomic_write_text(paths["xml"], XmlSerializer.serialize(system))
        with atomic_path(paths["pdb"]) as tmp, open(tmp, "w") as fh:
            app.PDBFile.writeFile(liquid.topology, liquid.positions * unit.nanometer, fh)
        header = {
            "identity": key,
            "identity_data": json_ready(identity),
            "config_key": key,
            "config": config.to_data(),
            "stage": "minimize" if config.minimize else "nvt",
            "n_frames": 0,
            "payload": "positions",
            "topology": topology_to_data(liquid.topology, masses),
            "molecule_index": liquid.molecule_index.tolist(),
            "liquid_info": liquid.info,
            "npt_densities": [],
        }
        payload = json.dumps({"positions": liquid.positions.tolist(), "box": liquid.box_vectors.tolist()}).encode()
        write_checkpoint(paths["ckpt"], header, payload)
    else:
        system = load_openmm_xml(paths["xml"], "System")

    topology = topology_from_data(header["topology"])
    # the physical masses (the topology's record), for the dataset and the molecules' centres; the System's differ
    # under hydrogen mass repartitioning
    masses = _recorded_masses(header["topology"])
    if masses is None:
        masses = system_masses(system)
    molecule_index = np.asarray(header["molecule_index"])
    platform = choose_platform(config.platform)
    properties = platform_properties(platform, config.threads)
    if platform.getName() == "CPU":
        n_threads = properties.get("Threads", platform.getPropertyDefaultValue("Threads"))
        if n_threads != "1":
            logger.info("CPU platform with %s threads: this run is not bit-identical to another run of the same "
                        "configuration (threads: 1 makes it so)", n_threads)
    total_mass = masses.sum()

    def make_simulation(npt: bool, thermostat: Thermostat):
        sys_copy = XmlSerializer.clone(system)
        if npt:
            barostat = openmm.MonteCarloBarostat(config.pressure * unit.bar, config.temperature * unit.kelvin,
                                                 config.barostat_interval)
            barostat.setRandomNumberSeed(config.seed + 7)
            barostat.setName("MonteCarloBarostat")
            barostat.setForceGroup(31)
            sys_copy.addForce(barostat)
        integrator = make_integrator(thermostat, config.temperature, config.timestep, config.seed + 1,
                                     system=sys_copy)
        return app.Simulation(topology, sys_copy, integrator, platform, properties)

    def load(sim, header, payload):
        kind = header["payload"]
        if kind == "checkpoint":
            try:
                sim.context.loadCheckpoint(payload)
            except openmm.OpenMMException as exc:
                written_on = re.search(r"different Platform: (\S+)", str(exc))
                if written_on is None:
                    raise
                _move_checkpoint(sim, payload, written_on.group(1), portable_checkpoints, paths["ckpt"])
        elif kind in ("state", "portable"):
            sim.context.setState(deserialize_openmm_xml(payload.decode(), "State", f"the checkpoint {paths['ckpt']}"))
            if kind == "portable":  # mid-stage: the step count where it stopped
                sim.context.setStepCount(int(header["step"]))
        else:  # freshly packed positions
            start = json.loads(payload)
            sim.context.setPeriodicBoxVectors(*start["box"])
            sim.context.setPositions(np.asarray(start["positions"]))

    def save(sim, header, stage, *, as_state: bool):
        header = dict(header, stage=stage)
        if as_state or portable_checkpoints:  # State XML: a stage's start, or mid-stage with its step count
            state = sim.context.getState(getPositions=True, getVelocities=True)
            header["payload"], data = "state" if as_state else "portable", XmlSerializer.serialize(state).encode()
            if not as_state:
                header["step"] = int(sim.context.getStepCount())
        else:
            header["payload"], data = "checkpoint", sim.context.createCheckpoint()
        write_checkpoint(paths["ckpt"], header, data)
        return header, data

    n_eq = {"nvt": config.steps("nvt"), "npt": config.steps("npt"), "production": config.steps("production")}
    report = config.steps("report_interval")
    ckpt_every = config.steps("checkpoint_interval")
    target = int(header.get("production_target_steps", n_eq["production"]))
    if max_steps is not None and header["stage"] == "done" and not _extension_settled(header, target, max_steps, config):
        header = dict(header, stage="production")  # a finished run, given a larger budget: extend it
        if header.get("diffusion_checks"):  # its last check (not converged) was at ``target``: grow at once
            target = min(2 * target, max_steps)
            header["production_target_steps"] = target
        logger.info("extending the finished production of %s (diffusion not converged; budget %g ps)", output,
                    config.max_production)
    total = sum(n_eq.values()) - n_eq["production"] + target
    bar = _progress(progress, total, min(_steps_done(header, n_eq, config.steps("report_interval")), total))
    ns_per_day = None
    try:
        if header["stage"] == "minimize":
            sim = make_simulation(npt=False, thermostat=equilibration_thermostat)
            load(sim, header, payload)
            sim.minimizeEnergy()
            sim.context.setVelocitiesToTemperature(config.temperature * unit.kelvin, config.seed + 3)
            target_box = header["liquid_info"].get("target_box_nm")
            if target_box is not None:  # packed at packing_density: compress to the liquid's box, then minimise
                n_steps = compress_to_box(sim, float(target_box), molecule_index, masses)
                sim.minimizeEnergy()
                sim.context.setVelocitiesToTemperature(config.temperature * unit.kelvin, config.seed + 3)
                info = header["liquid_info"]
                header = dict(header, compression={"packed_density_g_cm3": info["initial_density_g_cm3"],
                                                   "density_g_cm3": info["target_density_g_cm3"],
                                                   "box_nm": float(target_box), "steps": n_steps})
                logger.info("compressed the box to %.3f nm (%.4g -> %.4g g/cm^3) in %d steps", target_box,
                            info["initial_density_g_cm3"], info["target_density_g_cm3"], n_steps)
            sim.context.setStepCount(0)
            header, payload = save(sim, header, "nvt", as_state=True)

        if prepare_only:
            logger.info("prepared %s: built and minimised (checkpoint %s, next stage %s); resume it with the same "
                        "configuration", output, paths["ckpt"], header["stage"])
            return ReferenceResult(dataset=output, system_xml=paths["xml"], pdb=paths["pdb"],
                                   checkpoint=paths["ckpt"], n_frames=_frames_in(output), npt_density=None,
                                   npt_density_std=None, ns_per_day=None)

        for stage in ("nvt", "npt"):
            if header["stage"] != stage:
                continue
            sim = make_simulation(npt=(stage == "npt"), thermostat=equilibration_thermostat)
            load(sim, header, payload)
            if header["payload"] == "state":
                sim.context.setStepCount(0)
            while sim.currentStep < n_eq[stage]:
                n = min(ckpt_every, n_eq[stage] - sim.currentStep)
                if stage == "npt":  # sample the density every report interval for the record
                    for _ in range(0, n, report):
                        k = min(report, n_eq[stage] - sim.currentStep)
                        sim.step(k)
                        vol = sim.context.getState().getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
                        header["npt_densities"].append(float(total_mass / vol * 1e21 / 6.02214076e23))
                        bar.update(k)
                else:
                    sim.step(n)
                    bar.update(n)
                header, payload = save(sim, header, stage, as_state=False)
            nxt = "npt" if stage == "nvt" else "production"
            if stage == "npt" and config.production_ensemble == "nvt" and header["npt_densities"]:
                _rescale_to_mean_density(sim, header["npt_densities"], total_mass, molecule_index, masses)
            sim.context.setStepCount(0)
            sim.context.setTime(0.0)
            header, payload = save(sim, dict(header, n_frames=0), nxt, as_state=True)

        if header["stage"] == "production":
            sim = make_simulation(npt=(config.production_ensemble == "npt"), thermostat=production_thermostat)
            load(sim, header, payload)
            first = header["payload"] == "state"
            if first:
                sim.context.setStepCount(0)
                sim.context.setTime(0.0)
            metadata = _metadata(config, header, system, production_thermostat, equilibration_thermostat)
            metadata["platform"] = {"name": platform.getName(), "properties": {
                name: platform.getPropertyValue(sim.context, name) for name in platform.getPropertyNames()}}
            # where each part of the production ran (a portable checkpoint moves a run between platforms)
            header["platform_segments"] = [*([] if first else header.get("platform_segments", [])),
                                           {"platform": platform.getName(), "from_step": int(sim.currentStep)}]
            if first or not output.exists():
                if sim.currentStep != 0:
                    raise CheckpointError(f"{output} is missing but the checkpoint {paths['ckpt']} is mid-production; "
                                          "pass --overwrite (overwrite=True) to start again")
                writer = _fresh_writer(output, header, masses, metadata, config)
            else:
                writer = _reopen_writer(output, header, masses, config)
            reporter = DatasetReporter(writer, report)
            sim.reporters.append(reporter)
            sim.reporters.extend(reporters or [])
            import time as _time

            t0, s0 = _time.perf_counter(), sim.currentStep
            try:
                if first:  # frame 0: the equilibrated starting point
                    reporter.report(sim, sim.context.getState(getPositions=True, getVelocities=True,
                                                              getForces=True, getEnergy=True))
                while True:
                    while sim.currentStep < target:
                        n = min(ckpt_every - sim.currentStep % ckpt_every, target - sim.currentStep)
                        sim.step(n)
                        bar.update(n)
                        writer.flush()
                        header, payload = save(sim, dict(header, n_frames=writer.n_frames), "production",
                                               as_state=False)
                    if max_steps is None:
                        break
                    # the check reads the dataset: close it, check, record, reopen (a crash in between resumes)
                    writer.close()
                    check = dict(diffusion_check(output))
                    check["production_ps"] = sim.currentStep * config.timestep
                    header["diffusion_checks"] = [*header.get("diffusion_checks", []), json_ready(check)]
                    settled = _check_satisfied(check, config) or target >= max_steps
                    logger.info("diffusion after %g ps of production: %s%s%s", check["production_ps"],
                                check.get("reason", "converged" if check.get("converged") else "not converged"),
                                "; no block error of D yet" if check.get("converged") and not
                                _check_satisfied(check, config) else "",
                                "" if settled else f"; extending to {min(2 * target, max_steps) * config.timestep:g} ps")
                    if not settled:
                        bar.total += min(2 * target, max_steps) - target
                        target = min(2 * target, max_steps)
                    header["production_target_steps"] = target
                    header, payload = save(sim, header, "production", as_state=False)
                    writer = _reopen_writer(output, header, masses, config)
                    reporter._writer = writer
                    if settled:
                        break
                elapsed = _time.perf_counter() - t0
                if sim.currentStep > s0 and elapsed > 0:
                    ns_per_day = (sim.currentStep - s0) * config.timestep * 1e-3 / elapsed * 86400
                extra = {"diffusion_checks": header["diffusion_checks"]} if header.get("diffusion_checks") else {}
                extra["platform_segments"] = header["platform_segments"]
                writer.update_metadata(completed=True, production_ns_per_day_last_segment=ns_per_day,
                                       production_ps=sim.currentStep * config.timestep, **extra)
            finally:
                writer.close()
            header, payload = save(sim, header, "done", as_state=False)
    finally:
        bar.close()

    dens = header.get("npt_densities") or []
    half = dens[len(dens) // 2 :]
    return ReferenceResult(
        dataset=output, system_xml=paths["xml"], pdb=paths["pdb"], checkpoint=paths["ckpt"], n_frames=_frames_in(output),
        npt_density=float(np.mean(half)) if half else None,
        npt_density_std=float(np.std(half)) if half else None, ns_per_day=ns_per_day,
    )


def _frames_in(output: Path) -> int:
    """Frames in the dataset at ``output`` (0 if there is none), from its header alone: a long AA dataset is not
    read into memory to count it."""
    if not output.exists():
        return 0
    with open_h5(output) as f:
        return int(read_header(f)[3])


def _recorded_masses(topology_data) -> np.ndarray | None:
    """The atoms' masses recorded in a checkpoint's topology (:func:`topology_to_data`), or None without them."""
    masses = [atom.get("mass") for chain in topology_data["chains"] for residue in chain["residues"]
              for atom in residue["atoms"]]
    return None if not masses or any(m is None for m in masses) else np.asarray(masses, dtype=float)


def repartition_hydrogen_mass(system, topology, hydrogen_mass: float) -> int:
    """Hydrogen mass repartitioning: set every hydrogen's mass in ``system`` to ``hydrogen_mass`` (Da), taking
    the difference from the heavy atom it is bonded to, so that every molecule keeps its mass.  Returns the
    number of hydrogens changed.  Raises :class:`~openmm_cgml.exceptions.InvalidSystemError` when a heavy atom
    would be left lighter than the new hydrogen mass or a hydrogen is not bonded to exactly one heavy atom."""
    from openmm import unit

    from ..exceptions import InvalidSystemError

    hydrogen_mass = float(hydrogen_mass)
    mass = system_masses(system).tolist()
    partners: dict[int, list[int]] = {}
    for bond in topology.bonds():
        a, b = bond[0], bond[1]
        for h, x in ((a, b), (b, a)):
            if h.element is not None and h.element.symbol == "H" and not (x.element is not None and x.element.symbol == "H"):
                partners.setdefault(h.index, []).append(x.index)
    new = list(mass)
    n = 0
    for atom in topology.atoms():
        if atom.element is None or atom.element.symbol != "H":
            continue
        heavy = partners.get(atom.index, [])
        if len(heavy) != 1:
            raise InvalidSystemError(f"hydrogen mass repartitioning: hydrogen {atom.index} ({atom.residue.name}) "
                                     f"is bonded to {len(heavy)} heavy atoms; expected one")
        delta = hydrogen_mass - mass[atom.index]
        new[atom.index] = hydrogen_mass
        new[heavy[0]] -= delta
        n += 1
    for i in sorted({x for xs in partners.values() for x in xs}):
        if new[i] <= hydrogen_mass:
            raise InvalidSystemError(f"hydrogen mass repartitioning to {hydrogen_mass:g} Da leaves atom {i} with "
                                     f"{new[i]:.3f} Da, no heavier than its hydrogens; use a smaller hydrogen_mass")
    for i, m in enumerate(new):
        if m != mass[i]:
            system.setParticleMass(i, m * unit.dalton)
    return n


def _check_satisfied(check: dict, config: ReferenceConfig) -> bool:
    """Whether a diffusion check ends the extension: converged, and with ``extend_until: block-error`` a block
    error of D (``n_blocks`` > 0 in the check)."""
    return bool(check.get("converged")) and (config.extend_until == "diffusive" or int(check.get("n_blocks") or 0) > 0)


def _extension_settled(header: dict, target: int, max_steps: int, config: ReferenceConfig) -> bool:
    """Whether a finished production needs no extension: its last diffusion check satisfied the config
    (:func:`_check_satisfied`), or it used the whole budget."""
    checks = header.get("diffusion_checks") or []
    return (bool(checks) and _check_satisfied(checks[-1], config)) or target >= max_steps


def _steps_done(header, n_eq, report_steps: int) -> int:
    """Steps a resumed run has done: the finished stages', and the production's recorded frames'."""
    stage = header["stage"]
    order = ["minimize", "nvt", "npt", "production", "done"]
    done = sum(n_eq[s] for s in ("nvt", "npt", "production") if order.index(s) < order.index(stage))
    if stage == "production" and header.get("n_frames", 0) > 1:  # the production's frames already recorded
        done += (header["n_frames"] - 1) * report_steps
    return done


def _progress(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="AA reference", disable=not enabled,
                dynamic_ncols=True)


def _rescale_to_mean_density(sim, densities, total_mass, molecule_index, masses) -> None:
    """Scale the box (moving whole molecules) to the mean density of the second half of NPT."""
    from openmm import unit

    box = sim.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    target = float(np.mean(densities[len(densities) // 2 :]))
    volume = total_mass / target * 1e21 / 6.02214076e23
    factor = (volume / abs(np.linalg.det(box))) ** (1 / 3)
    _scale_molecules(sim.context, factor, molecule_index, masses)
    logger.info("production box scaled by %.4f to the mean NPT density %.4f g/cm^3", factor, target)


def _scale_molecules(context, factor: float, molecule_index, masses) -> None:
    """Scale the periodic box by ``factor``, moving whole molecules with their centres of mass."""
    from openmm import unit

    state = context.getState(getPositions=True)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    n_mol = molecule_index.max() + 1
    mol_mass = np.bincount(molecule_index, weights=masses, minlength=n_mol)
    com = np.stack([np.bincount(molecule_index, weights=masses * pos[:, k], minlength=n_mol) for k in range(3)], 1)
    com /= mol_mass[:, None]
    context.setPeriodicBoxVectors(*(box * factor))
    context.setPositions(pos + (factor - 1.0) * com[molecule_index])
    context.applyConstraints(1e-6)


def compress_to_box(simulation, length: float, molecule_index, masses, *, strain: float = 0.01,
                    relax_steps: int = 250, min_iterations: int = 50) -> int:
    """Compress a periodic cube to the edge ``length`` (nm), a small step at a time: each step scales the box and
    the molecules' centres of mass by at most ``1 - strain``, minimises the energy briefly (``min_iterations``)
    and runs ``relax_steps`` of ``simulation``'s own dynamics, so the molecules rearrange as the box shrinks (a
    liquid packed at a lower density, :func:`openmm_cgml.reference.build_liquid`'s ``packing_density``).
    Returns the number of steps taken; a box already at or below ``length`` is left alone."""
    from openmm import unit

    if not 0 < strain < 0.5:
        raise ConfigurationError(f"strain must lie in (0, 0.5), got {strain}")
    molecule_index = np.asarray(molecule_index)
    masses = np.asarray(masses, dtype=float)
    n = 0
    while True:
        box = simulation.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
        current = float(abs(np.linalg.det(box))) ** (1 / 3)
        if current <= length * (1 + 1e-9):
            return n
        _scale_molecules(simulation.context, max(length / current, 1.0 - strain), molecule_index, masses)
        simulation.minimizeEnergy(maxIterations=min_iterations)
        simulation.step(relax_steps)
        n += 1


def _metadata(config: ReferenceConfig, header: dict, system, thermostat: Thermostat,
              equilibration: Thermostat) -> dict[str, Any]:
    info = header.get("liquid_info", {})
    dens = header.get("npt_densities") or []
    extra: dict[str, Any] = {"thermostat": thermostat.metadata(config.temperature)}
    if thermostat.kind == "langevin":
        extra["friction_per_ps"] = thermostat.friction
    if equilibration != thermostat:
        extra["equilibration_thermostat"] = equilibration.metadata(config.temperature)
    if header.get("compression"):
        extra["compression"] = header["compression"]  # packed at packing_density, compressed before NVT
    return {**extra,
        "kind": "all-atom reference",
        "configuration": config.to_data(),
        "forcefield": config.forcefield,
        "charge_method": config.charge_method,
        "components": info.get("components"),
        "smiles": [c["smiles"] for c in info.get("components", [])],
        "counts": [c["count"] for c in info.get("components", [])],
        "temperature_K": config.temperature,
        "pressure_bar": config.pressure,
        "timestep_ps": config.timestep,
        **({"hydrogen_mass_da": config.hydrogen_mass,
            "hydrogen_mass_note": "hydrogen mass repartitioning: structure as with physical masses, dynamics "
                                  "slightly slower (D and alpha from this run are not those of physical masses)"}
           if config.hydrogen_mass is not None else {}),
        **({"start_conformations": "unperturbed", "unperturbed_sampling": info.get("unperturbed")}
           if config.start_conformations == "unperturbed" else {}),
        "report_interval_steps": config.steps("report_interval"),
        "ensemble": "nve" if thermostat.kind == "nve" else config.production_ensemble,
        "integrator": integrator_name(thermostat),
        "constraints": {
            "n_constraints": system.getNumConstraints(),
            "pairs": [list(system.getConstraintParameters(i)[:2]) for i in range(system.getNumConstraints())],
            "note": "recorded forces exclude constraint forces (see DatasetReporter)",
        },
        "cutoff_nm": info.get("cutoff_nm"),
        "npt_density_g_cm3": float(np.mean(dens[len(dens) // 2 :])) if dens else None,
        "npt_density_series_g_cm3": dens,
        "molecule_index": header["molecule_index"],
        "versions": package_versions(),
        "machine": machine_info(),
    }


def _fresh_writer(output: Path, header, masses, metadata, config) -> TrajectoryWriter:
    if output.exists():
        output.unlink()
    return TrajectoryWriter(output, header["topology"], masses, metadata, fields=config.fields,
                            precision=config.precision, chunk_frames=max(1, min(64, config.steps("checkpoint_interval")
                                                                                 // config.steps("report_interval"))))


def _reopen_writer(output: Path, header, masses, config) -> TrajectoryWriter:
    try:
        writer = TrajectoryWriter(output, header["topology"], masses, fields=config.fields,
                                  precision=config.precision, mode="a")
    except CorruptFileError as exc:
        raise CheckpointError(f"cannot resume: {exc}") from exc
    if writer.n_frames < header["n_frames"]:
        writer.close()
        raise CheckpointError(
            f"cannot resume: {output} has {writer.n_frames} frames but the checkpoint vouches for "
            f"{header['n_frames']}; the dataset was modified or lost — pass --overwrite (overwrite=True) to start "
            "again"
        )
    if writer.n_frames > header["n_frames"]:
        logger.info("dropping %d frames written after the last checkpoint", writer.n_frames - header["n_frames"])
        writer.truncate(header["n_frames"])
    return writer

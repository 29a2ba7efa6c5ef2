"""IBI's one configuration schema (quantities with units) and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Friction, Length, PositiveLength, Pressure, StrictModel, Temperature, Timestep
from ..forces.tabulated import TabulatedPairPotential
from ..units import KB

__all__ = ["IBISettings", "IBIResult", "RENAMED_KEYS"]

#: Keys of earlier versions and what replaced them (a configuration using one is refused with this message).
RENAMED_KEYS = {
    "pressure_factor": "pressure_factor (per bar) was replaced by pressure_scale, a pressure: pressure_scale = "
                       "1 / pressure_factor, e.g. '3333 bar' for 3e-4 per bar",
}


class IBISettings(StrictModel):
    """Settings of iterative Boltzmann inversion (YAML and Python alike; quantities with units).

    Attributes
    ----------
    temperature : "K"
    cutoff : "nm"
        Pair cutoff, at most half the smallest box width.
    pair_cutoffs : dict of "A-B" to "nm"
        Shorter cutoffs of some bead-type pairs (VOTCA's per-interaction ``max``): their potential is tapered to
        zero at their own cutoff (updated and scored only inside it); the others use ``cutoff``, which must be
        the largest.
    exclusions : "molecule" or "bonded"
        Which bead pairs the pair tables act on (and the target and sampled g(r) count): every intermolecular pair
        (``molecule``, the default: small molecules, whose intramolecular structure the bonded terms carry), or
        every pair but the 1-2 and 1-3 pairs along the bonds (``bonded``: polymer chains, whose beads far apart along
        the chain need the excluded volume the pair potential gives, and whose fitted tables then carry over to
        longer chains).
    bin_width : "nm"
        RDF and potential grid spacing.
    max_iterations : int
    damping : float
        a in (0, 1].
    smoothing : int
        Width (bins) of the running mean applied to each update (1 = none).
    g_min : float
        Below this g is "core": no update, the potential is extrapolated.
    core_curvature : float
        kJ/mol/nm^2: the smallest curvature of the repulsive wall extrapolated into the core (default 1000).  A
        stiffer wall (1e5) keeps beads out of the core when the fixed terms do not (a force-matched network refined
        with ``base_model`` can have regions it was never trained on at close contact).
    tolerance : float
        Overall RDF error (the largest over pairs of the RMS of g - g_target) below which the loop stops.
    noise_factor : float or None
        An iteration is at the noise floor when every pair's RDF error is at most this multiple of its noise floor
        (the RDF error that sampling noise alone gives: the target's and the iteration's sample's, from blocks of
        frames).  There the loop doubles ``production_steps`` after an iteration that did not improve on the best
        (up to ``max_sampling_factor`` times the configured value), and stops once it is at the floor with the
        sampling at that cap.  ``null``: no noise-floor stop and no growth of the sampling.
    max_sampling_factor : int
        Largest factor by which the noise-aware rule may multiply ``production_steps`` (1: never).
    patience : int or None
        Stop after this many iterations in a row without a better one (by :meth:`rank`); ``null``: never.
    tail_width : "nm"
        Over which the potential is tapered to zero before the cutoff.
    timestep : "fs"
    friction : "1/ps"
        Of the Langevin middle integrator that samples each iteration.
    equilibration_steps, production_steps, sample_interval : int
        Per iteration.
    target_pressure : "bar" or None
        Enables the pressure correction.
    pressure_tolerance : "bar"
        With a target pressure, an iteration counts as converged, and is preferred as the best one, only if its
        pressure is within this of the target (the lowest RDF error among those; if none is, the smallest pressure
        deviation).  Without it IBI keeps the iteration with the best RDF, which at liquid density is one with the
        pressure far off: such a model boils off in an NPT run.
    pressure_scale : "bar"
        The correction's amplitude ``A = -sign(dP) 0.1 kT min(1, |dP| / pressure_scale)``.
    pressure_start, pressure_ramp : int
        Iteration at which the correction starts, and the number of iterations to ramp it to full size.
    seed : int
        Of the start velocities and the Langevin integrator (with ``refine_bonded``, the Context rebuilt after
        iteration k gets ``seed + k + 1``); OpenMM reads an integrator seed of 0 as "random", so 0 is replaced by
        a fixed seed.
    platform : str
        OpenMM platform of the IBI runs (forces with ``DeterministicForces`` where the platform has it).
    threads : int or None
        CPU threads for the CPU platform.  Two runs of the same settings are bit-identical on ``Reference`` and on
        ``CPU`` with ``threads: 1``; with more CPU threads the force summation order varies, and so do the results
        (statistically equivalent).  A resumed run is bit-identical to an uninterrupted one on the platform and
        thread count it was interrupted on.
    refine_bonded : bool
        Also correct the bonded terms each iteration towards the target bonded distributions (needs
        ``bonded_targets``); Boltzmann inversion alone is exact only for uncoupled coordinates.
    bonded_update : {"boltzmann", "moments"}
        How ``refine_bonded`` corrects tabulated bonded terms (harmonic ones always match mean and variance):
        ``boltzmann`` adds a damped -kT ln(P_target / P_CG) inside the target's well (any shape, but the tables
        stiffen where the distributions are thinly sampled); ``moments`` adds a smooth correction sum_k l_k f_k(x)
        in ``bonded_moments`` basis functions (Legendre polynomials of x scaled to the target's range and continued
        linearly beyond it; Fourier terms for dihedrals), a Newton step of the relative entropy that matches the
        first ``bonded_moments`` moments of each distribution: gentle enough for a refined network's timestep.
    bonded_moments : int or dict
        Basis functions of the ``moments`` update (2: mean and variance, a harmonic correction), for every kind or
        per kind (``{"bond": 2, "angle": 4}``; kinds not named take 4).  More moments match more of a shape but
        can stiffen the term: a 4-moment correction of a bimodal bond reached curvatures of 3e5 kJ/mol/nm^2 at the
        edges of the AA range and blew a refined network up at its timestep (results page).
    temperature_guard : float or None
        Largest relative deviation of an iteration's mean kinetic temperature from ``temperature`` (0.5: 50 %)
        before the run stops with an error: such a run boils (the timestep is too large for the potentials, or
        they are unstable) and its RDFs and tables mean nothing.  Smaller deviations that still exceed the
        thermostat's statistical tolerance are warned about and ranked last.  ``null`` turns the guard off.
    method : {"ibi", "imc"}
        Pair update: iterative Boltzmann inversion, or inverse Monte Carlo (:func:`~openmm_cgml.ibi.imc_update`).
    imc_regularization : float
        lambda of the IMC solve (A + lambda diag(A)) x = <S> - S*: large values turn IMC into a damped IBI.
    initial : {"pmf", "zero"}
        The first pair potentials: the potential of mean force -kT ln g (IBI's usual start), or none, for
        refining a force field the fixed terms already make whole (a neural model: the pair tables are then its
        structure-matching correction).
    """

    temperature: Temperature
    cutoff: PositiveLength
    pair_cutoffs: dict[str, PositiveLength] = Field(default_factory=dict)
    exclusions: Literal["molecule", "bonded"] = "molecule"
    bin_width: PositiveLength = "0.01 nm"
    max_iterations: int = Field(30, ge=1)
    damping: float = Field(0.8, gt=0, le=1)
    smoothing: int = Field(3, ge=1)
    g_min: float = Field(1e-3, gt=0, lt=0.5)
    core_curvature: float = Field(1e3, gt=0, description="kJ/mol/nm^2: smallest curvature of the core's wall")
    tolerance: float = Field(0.02, gt=0)
    noise_factor: float | None = Field(1.5, gt=0)
    max_sampling_factor: int = Field(8, ge=1)
    patience: int | None = Field(4, ge=1)
    tail_width: Length = "0.1 nm"
    timestep: Timestep = "5 fs"
    friction: Friction = "1 /ps"
    equilibration_steps: int = Field(1000, ge=0)
    production_steps: int = Field(10000, ge=1)
    sample_interval: int = Field(100, ge=1)
    target_pressure: Pressure | None = None
    pressure_tolerance: Pressure = "100 bar"
    pressure_scale: Pressure = "3333 bar"
    pressure_start: int = Field(0, ge=0)
    pressure_ramp: int = Field(5, ge=0)
    seed: int = 1
    platform: str = "CPU"
    threads: int | None = Field(None, ge=1)
    refine_bonded: bool = False
    bonded_update: Literal["boltzmann", "moments"] = "boltzmann"
    bonded_moments: int | dict[Literal["bond", "angle", "dihedral"], int] = 4
    method: Literal["ibi", "imc"] = "ibi"
    imc_regularization: float = Field(0.1, ge=0)
    initial: Literal["pmf", "zero"] = "pmf"
    temperature_guard: float | None = Field(0.5, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any):
        if isinstance(data, dict):
            for key, message in RENAMED_KEYS.items():
                if key in data:
                    raise ValueError(f"the key {key!r} was renamed: {message}")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        checks = [
            (self.temperature > 0, "temperature must be positive"),
            (self.cutoff > 0, "cutoff must be positive"),
            (0 < self.bin_width < self.cutoff / 4, "bin_width must be positive and below cutoff/4"),
            (0 <= self.tail_width < self.cutoff / 2, "tail_width must lie in [0, cutoff/2)"),
            (self.friction > 0, "friction must be positive: IBI samples the canonical ensemble with a Langevin "
                                "thermostat"),
            (self.production_steps >= self.sample_interval, "need production_steps >= sample_interval"),
            (self.pressure_tolerance > 0, "pressure_tolerance must be positive"),
            (self.pressure_scale > 0, "pressure_scale must be positive"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        moments = self.bonded_moments.values() if isinstance(self.bonded_moments, dict) else [self.bonded_moments]
        if any(not 1 <= m <= 8 for m in moments):
            raise ValueError(f"bonded_moments must lie in [1, 8] (per kind), got {self.bonded_moments}")
        for key, rc in self.pair_cutoffs.items():
            if len(key.split("-")) != 2:
                raise ValueError(f"pair_cutoffs keys are bead-type pairs 'A-B', got {key!r}")
            if not 2 * self.tail_width < rc <= self.cutoff + 1e-12:
                raise ValueError(f"pair_cutoffs[{key!r}] = {rc:g} nm must exceed twice tail_width and not exceed "
                                 f"cutoff ({self.cutoff:g} nm), the largest")
        return self

    def pair_cutoff(self, pair) -> float:
        """The cutoff (nm) of the bead-type pair ``pair`` (a tuple or ``"A-B"``): ``pair_cutoffs``, else ``cutoff``."""
        from ..topology import key_from_str, key_to_str

        given = {key_to_str(key_from_str(k, 2)): float(v) for k, v in self.pair_cutoffs.items()}
        return given.get(key_to_str(key_from_str(pair, 2)), float(self.cutoff))

    @property
    def kt(self) -> float:
        """kT in kJ/mol."""
        return KB * self.temperature

    @property
    def pressure_factor(self) -> float:
        """1 / ``pressure_scale`` (per bar), the factor of :func:`~openmm_cgml.ibi.pressure_correction`."""
        return 1.0 / self.pressure_scale

    def physics(self) -> dict[str, Any]:
        """The settings that change the physics of the iterations (MD floats): what a checkpoint must match.
        ``max_iterations``, ``tolerance``, ``pressure_tolerance``, ``patience``, ``temperature_guard``, the platform
        and threads may change on resume."""
        return {k: v for k, v in dict(self).items()
                if k not in ("max_iterations", "tolerance", "pressure_tolerance", "patience", "platform", "threads",
                             "temperature_guard") and not (k == "initial" and v == "pmf")  # older checkpoints
                and not (k == "pair_cutoffs" and not v) and not (k == "exclusions" and v == "molecule")
                and not (k == "core_curvature" and v == 1e3)
                and not (k == "bonded_update" and v == "boltzmann") and not (k == "bonded_moments" and v == 4)}

    @property
    def max_production_steps(self) -> int:
        """The cap of the noise-aware growth of the sampling: ``max_sampling_factor * production_steps``."""
        return self.max_sampling_factor * self.production_steps

    def stop_reason(self, history: list, best_iteration: int) -> str | None:
        """Why the loop stops after the last ``history`` entry, or None: ``"tolerance"`` (converged),
        ``"noise_floor"`` (at the noise floor, ``noise_ratio <= noise_factor``, with ``production_steps`` at its
        cap, the temperature held and any target pressure within ``pressure_tolerance``: a g(r) at its noise floor
        with the pressure still off is not done) or ``"patience"`` (no better iteration for ``patience``
        iterations); ``max_iterations`` is the loop's."""
        entry = history[-1]
        if self.converged(entry):
            return "tolerance"
        if (self.noise_factor is not None and entry.get("noise_ratio") is not None
                and entry["noise_ratio"] <= self.noise_factor and self.rank(entry)[0] == 0
                and entry.get("production_steps", self.production_steps) >= self.max_production_steps):
            return "noise_floor"
        if self.patience is not None and entry["iteration"] - best_iteration >= self.patience:
            return "patience"
        return None

    def rank(self, entry: dict) -> tuple[int, float]:
        """Order of preference of an iteration's history ``entry`` (lower is better): the RDF error, but with a
        target pressure, iterations within ``pressure_tolerance`` of it come first (by RDF error) and the
        others after them (by pressure deviation); iterations that did not hold the thermostat's temperature
        (``temperature_held`` false: their RDFs belong to another temperature) come last, by RDF error."""
        if entry.get("temperature_held") is False:
            return 2, float(entry["error"])
        if self.target_pressure is None:
            return 0, float(entry["error"])
        deviation = abs(float(entry["pressure_bar"]) - self.target_pressure)
        return (0, float(entry["error"])) if deviation <= self.pressure_tolerance else (1, deviation)

    def converged(self, entry: dict) -> bool:
        """RDF error below ``tolerance``, the temperature held and, with a target pressure, the pressure within
        ``pressure_tolerance``."""
        return self.rank(entry)[0] == 0 and entry["error"] < self.tolerance


@dataclass
class IBIResult:
    """Outcome of an IBI run.

    Attributes
    ----------
    r : ndarray
        Grid (nm, bin centres).
    potentials : dict
        Best potential per pair (lowest overall error; with a target pressure, among the iterations within
        ``pressure_tolerance`` of it: :meth:`IBISettings.rank`), on ``r``, as simulated (tail tapered).
    term : TabulatedPairPotential
        The best potentials as a force term.
    rdfs, targets : dict
        g(r) produced by the best potentials, and the targets.
    history : list of dict
        Per iteration: ``iteration``, ``error`` (overall), ``errors`` (per pair), ``pressure_bar``, the mean
        kinetic ``temperature_K`` and ``temperature_held`` (within 10 % plus 3 standard errors of the
        thermostat's; a warning is logged when not), ``production_steps`` (as sampled), the sampling noise of
        g(r) per pair, ``target_noise`` (of the target; null where unknown) and ``sample_noise`` (of this
        iteration's frames), ``noise_floor`` per pair (``sqrt(target_noise^2 + sample_noise^2)``: the expected
        error of an exact potential) and ``noise_ratio`` (the largest over pairs of error / noise floor).
    converged : bool
        The RDF error fell below ``tolerance`` (:meth:`IBISettings.converged`).
    stop_reason : str
        ``"tolerance"``, ``"noise_floor"``, ``"patience"`` (:meth:`IBISettings.stop_reason`) or
        ``"max_iterations"``.
    best_iteration : int
    bonded_terms : list of ForceTerm
        The bonded terms of the best iteration: the fixed terms as given, or, with ``refine_bonded``, as
        refined (then ``history`` entries also carry ``bonded_overlap``: ``{"bond A-B": overlap}``, the CG
        distribution's overlap with the target's, 1 = identical, before that iteration's update).
    """

    r: np.ndarray
    potentials: dict
    term: TabulatedPairPotential
    rdfs: dict
    targets: dict
    history: list = field(default_factory=list)
    converged: bool = False
    best_iteration: int = 0
    bonded_terms: list = field(default_factory=list)
    stop_reason: str = "max_iterations"

    @property
    def iterations(self) -> int:
        return len(self.history)

    @property
    def terms(self) -> list:
        """The whole force field: the pair term and the bonded terms."""
        return [self.term, *self.bonded_terms]

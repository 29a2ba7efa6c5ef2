"""Iterative Boltzmann inversion of pair potentials, simulated in OpenMM.

U_0(r) = -kT ln g_t(r);  U_{i+1}(r) = U_i(r) + a kT ln(g_i(r) / g_t(r))  (smoothed, damped by a),
with the repulsive core (g_t below ``g_min``) extrapolated, the tail shifted and tapered to zero at
the cutoff, and an optional pressure correction dU = A (1 - r / r_c) ramped in over iterations.

Convergence metric (stated): for each type pair, the RMS deviation of g_i from g_t over the
grid from 0 to the cutoff, ``err_ab = sqrt(mean_k (g_i(r_k) - g_t(r_k))^2)``; overall, the
largest over pairs.  The loop stops when the overall error falls below ``tolerance`` (with a target
pressure: and the pressure is within ``pressure_tolerance`` of it) or after ``max_iterations``.  The
tables are updated inside one OpenMM Context (no rebuild).

With ``method="imc"`` the pair update is inverse Monte Carlo (Lyubartsev and Laaksonen's Newton inversion, as
VOTCA's csg_inverse had it; :func:`imc_update`) instead of the IBI formula: it accounts for how every bin's
count responds to the potential in every other bin, of all pairs at once.

With ``refine_bonded`` the bonded terms are corrected too, every iteration, on the frames already sampled
(:class:`~openmm_cgml.ibi._bonded_refine.BondedRefiner`: moment matching for harmonic terms, Boltzmann
inversion for tables); the Context is then rebuilt with the new terms.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_path, atomic_write_text, package_versions
from ..exceptions import CheckpointError, ConfigurationError, SimulationError
from ..forces.base import CGSystemInfo
from ..forces.tabulated import TabulatedPairPotential, check_cutoff, pair_key
from ._boltzmann import KB
from ._bonded_refine import _REFINABLE, BondedRefiner
from ._rdf import PairRDFCounter
from ._tables import TargetRDF, write_gromacs_table, write_lammps_tables, write_openmm_tables

__all__ = [
    "IBISettings",
    "IBIResult",
    "IterativeBoltzmannInversion",
    "pmf_potential",
    "ibi_update",
    "imc_update",
    "extrapolate_core",
    "pressure_correction",
    "rdf_error",
    "BAR_PER_KJ_MOL_NM3",
]

logger = logging.getLogger(__name__)

#: 1 kJ/mol/nm^3 in bar.
BAR_PER_KJ_MOL_NM3 = 16.6054


@dataclass(frozen=True)
class IBISettings:
    """IBI settings in MD units (K, nm, ps, bar).

    Attributes
    ----------
    temperature : float
    cutoff : float
        Pair cutoff (nm), at most half the box.
    bin_width : float
        RDF and potential grid spacing (nm).
    max_iterations : int
    damping : float
        a in (0, 1].
    smoothing : int
        Width (bins) of the running mean applied to each update (1 = none).
    g_min : float
        Below this g is "core": no update, the potential is extrapolated.
    tolerance : float
        Overall RDF error below which the loop stops.
    tail_width : float
        nm over which the potential is tapered to zero before the cutoff.
    timestep, friction : float
        ps and 1/ps (Langevin middle integrator).
    equilibration_steps, production_steps, sample_interval : int
        Per iteration.
    target_pressure : float or None
        bar; enables the pressure correction.
    pressure_tolerance : float
        bar; with a target pressure, an iteration counts as converged, and is preferred as the best one, only
        if its pressure is within this of the target (the lowest RDF error among those; if none is, the
        smallest pressure deviation).  Without it, IBI keeps the iteration with the best RDF, which at liquid
        density is one with the pressure far off: such a model boils off in an NPT run.
    pressure_factor : float
        A = -sign(dP) * 0.1 kT * min(1, pressure_factor * |dP|)  (per bar).
    pressure_start, pressure_ramp : int
        Iteration at which the correction starts and number of iterations to ramp it to full size.
    seed : int
    platform : str
    threads : int or None
        CPU threads for the CPU platform.
    method : {"ibi", "imc"}
        Pair update: iterative Boltzmann inversion, or inverse Monte Carlo (:func:`imc_update`).
    imc_regularization : float
        lambda of the IMC solve (A + lambda diag(A)) x = <S> - S*: large values turn IMC into a damped IBI.
    refine_bonded : bool
        Also correct the bonded terms each iteration towards the target bonded distributions (needs
        ``bonded_targets``); Boltzmann inversion alone is exact only for uncoupled coordinates.
    """

    temperature: float
    cutoff: float
    bin_width: float = 0.01
    max_iterations: int = 30
    damping: float = 0.8
    smoothing: int = 3
    g_min: float = 1e-3
    tolerance: float = 0.02
    tail_width: float = 0.1
    timestep: float = 0.005
    friction: float = 1.0
    equilibration_steps: int = 1000
    production_steps: int = 10000
    sample_interval: int = 100
    target_pressure: float | None = None
    pressure_tolerance: float = 100.0
    pressure_factor: float = 3e-4
    pressure_start: int = 0
    pressure_ramp: int = 5
    seed: int = 1
    platform: str = "CPU"
    threads: int | None = None
    refine_bonded: bool = False
    method: str = "ibi"
    imc_regularization: float = 0.1

    def __post_init__(self):
        checks = [
            (self.method in ("ibi", "imc"), f"method must be 'ibi' or 'imc', got {self.method!r}"),
            (self.imc_regularization >= 0, "imc_regularization must be >= 0"),
            (self.temperature > 0, "temperature must be positive"),
            (self.cutoff > 0, "cutoff must be positive"),
            (0 < self.bin_width < self.cutoff / 4, "bin_width must be positive and below cutoff/4"),
            (self.max_iterations >= 1, "max_iterations must be >= 1"),
            (0 < self.damping <= 1, "damping must lie in (0, 1]"),
            (self.smoothing >= 1, "smoothing must be >= 1 (bins)"),
            (0 < self.g_min < 0.5, "g_min must lie in (0, 0.5)"),
            (self.tolerance > 0, "tolerance must be positive"),
            (0 <= self.tail_width < self.cutoff / 2, "tail_width must lie in [0, cutoff/2)"),
            (self.timestep > 0 and self.friction > 0, "timestep and friction must be positive"),
            (self.production_steps >= self.sample_interval > 0, "need production_steps >= sample_interval > 0"),
            (self.equilibration_steps >= 0, "equilibration_steps must be >= 0"),
            (self.pressure_tolerance > 0, "pressure_tolerance must be positive"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigurationError(f"IBI settings: {msg}")

    @property
    def kt(self) -> float:
        return KB * self.temperature

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
        thermostat's; a warning is logged when not).
    converged : bool
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

    @property
    def iterations(self) -> int:
        return len(self.history)


# ----------------------------------------------------------------------------- potential algebra
def extrapolate_core(r: np.ndarray, u: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace ``u`` below the first valid point by a repulsive wall continuing it smoothly.

    The wall keeps the value and the (repulsive) force at the first valid point and adds a
    curvature, so the force keeps growing inwards.
    """
    u = np.array(u, dtype=float)
    idx = np.flatnonzero(valid)
    if idx.size < 3:
        raise ConfigurationError("fewer than 3 grid points where g(r) is above g_min: cannot build a potential")
    c = idx[0]
    dr = r[1] - r[0]
    force = max(-(u[c + 1] - u[c]) / dr, 0.0)
    curvature = max(force / max(r[c], dr), 1e3)
    d = r[c] - r[:c]
    u[:c] = u[c] + force * d + 0.5 * curvature * d**2
    return u


def _first_run(mask: np.ndarray) -> np.ndarray:
    """Mask from the first True onwards (a contiguous valid region after the core)."""
    out = np.zeros_like(mask)
    idx = np.flatnonzero(mask)
    if idx.size:
        out[idx[0] :] = True
    return out


def _taper(r: np.ndarray, cutoff: float, width: float) -> np.ndarray:
    if width <= 0:
        return np.ones_like(r)
    x = np.clip((r - (cutoff - width)) / width, 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * x))


def _tail_mean(r, u, cutoff: float, tail_width: float) -> float:
    """Mean of ``u`` over the tail window (at least the last 5 bins): a low-noise anchor for U(cutoff)."""
    sel = r >= cutoff - max(tail_width, 5 * (r[1] - r[0]))
    return float(np.mean(u[sel]))


def finalize(r, u, cutoff: float, tail_width: float) -> np.ndarray:
    """Shift so that U -> 0 at the cutoff (tail-window mean as anchor) and taper the tail."""
    return (u - _tail_mean(r, u, cutoff, tail_width)) * _taper(r, cutoff, tail_width)


def pmf_potential(r, g_target, kt: float, *, g_min: float = 1e-3, cutoff: float | None = None,
                  tail_width: float = 0.1) -> np.ndarray:
    """Initial guess U_0 = -kT ln g_t, with core extrapolation, shift and tail taper."""
    g = np.asarray(g_target, dtype=float)
    valid = _first_run(g > g_min)
    with np.errstate(divide="ignore"):
        u = np.where(valid, -kt * np.log(np.maximum(g, g_min)), 0.0)
    u = extrapolate_core(r, u, valid)
    return finalize(r, u, cutoff if cutoff is not None else r[-1] + 0.5 * (r[1] - r[0]), tail_width)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    pad = width // 2
    xp = np.pad(x, (pad, width - 1 - pad), mode="edge")
    return np.convolve(xp, kernel, mode="valid")


def ibi_update(g, g_target, kt: float, *, damping: float = 1.0, g_min: float = 1e-3, smoothing: int = 1) -> np.ndarray:
    """dU = a kT ln(g / g_t) where both are above ``g_min`` (zero elsewhere), smoothed."""
    g = np.asarray(g, float)
    gt = np.asarray(g_target, float)
    ok = (g > g_min) & (gt > g_min)
    du = np.zeros_like(gt)
    du[ok] = damping * kt * np.log(g[ok] / gt[ok])
    return _smooth(du, smoothing) * ok


def imc_update(frame_counts, target_counts, valid, kt: float, *, damping: float = 1.0,
               regularization: float = 0.1) -> np.ndarray:
    """Inverse Monte Carlo (Newton) update of tabulated pair potentials, all pairs and bins at once.

    With S the per-frame pair counts of every (pair, bin) and U the potentials on the same bins, to first order
    <S_a>(U + dU) = <S_a>(U) - (1/kT) sum_b A_ab dU_b, with A the covariance of S over the sampled frames.
    Asking for the target counts S* gives dU = kT A^-1 (<S> - S*); here, regularised as in Levenberg-Marquardt,
    dU = a kT (A + lambda diag(A))^-1 (<S> - S*), over the ``valid`` bins only (zero elsewhere).  Too many pairs
    in a bin (<S> > S*) raise U there.  For uncorrelated Poisson counts (A diagonal, A_aa = <S_a>) this is
    a kT (<S> - S*) / <S>: IBI's a kT ln(g / g*) to first order; large lambda gives a damped IBI.

    Parameters
    ----------
    frame_counts : array, shape (n_frames, n_bins_total)
    target_counts : array, shape (n_bins_total,)
        S* per frame (g_target times the ideal-gas counts).
    valid : bool array, shape (n_bins_total,)
    kt : float
    damping, regularization : float
    """
    counts = np.asarray(frame_counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] < 2:
        raise ConfigurationError("IMC needs the pair counts of at least 2 frames")
    idx = np.flatnonzero(np.asarray(valid, bool))
    du = np.zeros(counts.shape[1])
    if idx.size == 0:
        return du
    s = counts[:, idx]
    mean = s.mean(0)
    dev = s - mean
    cov = dev.T @ dev / (len(s) - 1)
    diag = np.maximum(np.diag(cov), 1e-12)
    rhs = mean - np.asarray(target_counts, dtype=float)[idx]
    du[idx] = damping * kt * np.linalg.solve(cov + regularization * np.diag(diag), rhs)
    return du


def pressure_correction(r, cutoff: float, pressure: float, target: float, kt: float, *, factor: float = 3e-4,
                        scale: float = 1.0) -> np.ndarray:
    """dU(r) = A (1 - r / r_c), A = -sign(dP) 0.1 kT min(1, factor |dP|) * scale (VOTCA's simple scheme).

    Too high a pressure (dP > 0) gives A < 0: more attraction.
    """
    dp = pressure - target
    a = -np.sign(dp) * 0.1 * kt * min(1.0, factor * abs(dp)) * scale
    return a * np.clip(1 - np.asarray(r) / cutoff, 0.0, None)


def rdf_error(g, g_target) -> float:
    """RMS deviation of g from the target over the grid."""
    return float(np.sqrt(np.mean((np.asarray(g) - np.asarray(g_target)) ** 2)))


# ----------------------------------------------------------------------------- the loop
class IterativeBoltzmannInversion:
    """IBI of all bead-type pairs of a CG system, simulated in OpenMM (NVT, Langevin).

    Parameters
    ----------
    info : CGSystemInfo
        The CG system (types, molecules, bonds, masses, periodic box).
    positions : array, shape (n_beads, 3)
        Starting configuration (nm), e.g. a mapped AA frame.
    targets : dict
        ``{("A", "B"): TargetRDF}`` for every type pair (intermolecular g(r)).
    settings : IBISettings
    fixed_terms : sequence of ForceTerm
        Terms kept fixed during IBI (bonded priors); with ``settings.refine_bonded`` the harmonic and
        tabulated bonded ones among them are refined instead.
    bonded_targets : dict, optional
        Target bonded samples, ``{"bond": {key: values}, ...}`` (:func:`bonded_samples` of the mapped
        reference); needed by ``refine_bonded``.

    Notes
    -----
    Non-bonded pairs inside a molecule are excluded, so targets must be intermolecular
    g(r) (as :func:`targets_from_dataset` computes).
    """

    CHECKPOINT = "ibi_checkpoint.npz"

    def __init__(self, info: CGSystemInfo, positions, targets, settings: IBISettings, fixed_terms=(),
                 bonded_targets=None):
        if not info.periodic:
            raise ConfigurationError("IBI needs a periodic CG system (info.box_vectors is None)")
        self.info = info
        self.settings = settings
        self.positions = np.asarray(getattr(positions, "_value", positions), dtype=float)
        if self.positions.shape != (info.n_beads, 3):
            raise ConfigurationError(f"positions must have shape ({info.n_beads}, 3), got {self.positions.shape}")
        check_cutoff(settings.cutoff, info, "IBI")
        self.fixed_terms = list(fixed_terms)
        self.refiner = None
        self._refined = [i for i, t in enumerate(self.fixed_terms) if isinstance(t, _REFINABLE)]
        if settings.refine_bonded:
            if bonded_targets is None:
                raise ConfigurationError("refine_bonded needs bonded_targets: the reference's bonded samples "
                                         "(openmm_cgml.ibi.bonded_samples of the mapped positions)")
            self.refiner = BondedRefiner([self.fixed_terms[i] for i in self._refined], bonded_targets, settings.kt,
                                         damping=settings.damping)
        types = info.type_names
        self.pairs = [(a, b) for i, a in enumerate(types) for b in types[i:]]
        given = {pair_key(*k): v for k, v in targets.items()}
        unknown = [k for k in given if k not in self.pairs]
        if unknown:
            raise ConfigurationError(f"targets given for unknown bead-type pairs {unknown}; the system's pairs are "
                                     f"{['-'.join(p) for p in self.pairs]}")
        missing = [p for p in self.pairs if p not in given]
        if missing:
            raise ConfigurationError(f"no target RDF for the bead-type pairs {['-'.join(p) for p in missing]}")
        n = int(round(settings.cutoff / settings.bin_width))
        self.r = (np.arange(n) + 0.5) * settings.bin_width
        self.targets = {}
        for p in self.pairs:
            t = given[p] if isinstance(given[p], TargetRDF) else TargetRDF(*given[p], source=f"target {p}")
            self.targets[p] = t.on(self.r)

    # ------------------------------------------------------------------ pieces
    def _term(self, potentials) -> TabulatedPairPotential:
        r_tab = np.concatenate([self.r, [self.settings.cutoff]])
        tables = {p: (r_tab, np.concatenate([u, [0.0]])) for p, u in potentials.items()}
        return TabulatedPairPotential(tables, cutoff=self.settings.cutoff, spacing=min(0.002, self.settings.bin_width),
                                      exclusions="molecule", name="pair")

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        # settings that change the physics; max_iterations, tolerance and the platform may change on resume
        physics = {k: v for k, v in dataclasses.asdict(self.settings).items()
                   if k not in ("max_iterations", "tolerance", "pressure_tolerance", "platform", "threads")}
        if not physics["refine_bonded"]:  # absent from checkpoints written before it existed
            del physics["refine_bonded"]
        if physics["method"] == "ibi":  # likewise
            del physics["method"], physics["imc_regularization"]
        h.update(json.dumps(physics, sort_keys=True).encode())
        if self.refiner is not None:
            h.update(json.dumps([t.to_data() for t in self.fixed_terms], sort_keys=True).encode())
            for kind, group in sorted(self.refiner.targets.items()):
                for key, values in sorted(group.items()):
                    h.update(f"{kind}:{'-'.join(key)}".encode())
                    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        for p in self.pairs:
            h.update("-".join(p).encode())
            h.update(np.round(self.targets[p], 8).tobytes())
        h.update(str(self.info.bead_types).encode())
        return h.hexdigest()[:16]

    def _build(self, term, bonded, seed: int):
        import openmm

        s = self.settings
        system = openmm.System()
        for m in self.info.masses:
            system.addParticle(float(m))
        system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) for row in self.info.box_vectors))
        pair_forces = term.create_forces(self.info)
        for k, pair_force in enumerate(pair_forces):
            pair_force.setName("pair" if len(pair_forces) == 1 else f"pair:{k}")
            pair_force.setForceGroup(0)
            system.addForce(pair_force)
        for g, t in enumerate(bonded, start=1):
            for f in t.create_forces(self.info):
                f.setName(t.name)
                f.setForceGroup(g)
                system.addForce(f)
        integrator = openmm.LangevinMiddleIntegrator(s.temperature, s.friction, s.timestep)
        integrator.setRandomNumberSeed(seed)
        platform = openmm.Platform.getPlatformByName(s.platform)
        props = {"Threads": str(s.threads)} if (s.threads and s.platform == "CPU") else {}
        context = openmm.Context(system, integrator, platform, props)
        return context, integrator, pair_forces

    def _pressure(self, context, n_dof: int) -> float:
        """Instantaneous pressure (bar) from the kinetic energy and -dU/dV of a uniform (atomic) scaling."""
        from openmm import unit

        state = context.getState(getPositions=True, getEnergy=True)
        x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        box = np.array([v.value_in_unit(unit.nanometer) for v in state.getPeriodicBoxVectors()])
        vol = abs(np.linalg.det(box))
        ke = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        eps = 1e-4
        energies = []
        for sign in (1, -1):
            f = (1 + sign * eps) ** (1 / 3)
            context.setPeriodicBoxVectors(*(box * f))
            context.setPositions(x * f)
            energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
                unit.kilojoule_per_mole))
        context.setPeriodicBoxVectors(*box)
        context.setPositions(x)
        du_dv = (energies[0] - energies[1]) / (2 * eps * vol)
        return ((2 * ke / 3) * (3 * self.info.n_beads / n_dof) / vol - du_dv) * BAR_PER_KJ_MOL_NM3

    def _sample(self, context, integrator, counter: PairRDFCounter, frames: list | None = None) -> tuple[float, dict]:
        """Equilibrate, then sample the RDFs (and append the positions to ``frames``); the mean pressure (bar) and
        the kinetic-temperature check."""
        from openmm import unit

        from ..simulation import degrees_of_freedom, kinetic_temperature, temperature_check

        s = self.settings
        if s.equilibration_steps:
            integrator.step(s.equilibration_steps)
        pressures, temps = [], []
        n_dof = degrees_of_freedom(context.getSystem())  # 3N: no constraints, no centre-of-mass remover
        for _ in range(s.production_steps // s.sample_interval):
            integrator.step(s.sample_interval)
            state = context.getState(getPositions=True)
            x = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            temps.append(kinetic_temperature(context, self.info.masses, n_dof))
            if not (np.all(np.isfinite(x)) and np.isfinite(temps[-1])):
                raise SimulationError("the CG simulation produced NaN positions or velocities during IBI; try a "
                                      "smaller timestep, more damping or a stiffer core")
            box = np.array([v.value_in_unit(unit.nanometer) for v in state.getPeriodicBoxVectors()])
            counter.add(x, box)
            if frames is not None:
                frames.append(x)
            pressures.append(self._pressure(context, n_dof))
        return float(np.mean(pressures)), temperature_check(temps, s.temperature, n_dof)

    def _imc(self, counter: PairRDFCounter, rdfs: dict) -> dict:
        """Per pair: the IMC update (smoothed like IBI's), from the iteration's per-frame counts."""
        s = self.settings
        n_frames = counter.n_frames
        ideal = counter.ideal_counts()
        target = np.concatenate([self.targets[p] for p in self.pairs]) * ideal
        valid = np.concatenate([(self.targets[p] > s.g_min) & (rdfs[p] > s.g_min) for p in self.pairs])
        if n_frames < 2 * valid.sum():
            logger.warning("IMC with %d sampled frames for %d bins: the count covariance is too noisy to invert "
                           "safely; sample at least twice as many frames as bins (smaller sample_interval or more "
                           "production_steps), or use method='ibi'", n_frames, int(valid.sum()))
        du = imc_update(counter.frame_counts(), target, valid, s.kt, damping=s.damping,
                        regularization=s.imc_regularization).reshape(len(self.pairs), -1)
        return {p: _smooth(du[k], s.smoothing) * valid.reshape(len(self.pairs), -1)[k]
                for k, p in enumerate(self.pairs)}

    def _refinable(self, bonded: list) -> list:
        return [bonded[i] for i in self._refined]

    def _with_refined(self, refined: list) -> list:
        """The fixed terms with the refinable ones replaced by ``refined`` (same order)."""
        out = list(self.fixed_terms)
        for i, t in zip(self._refined, refined, strict=True):
            out[i] = t
        return out

    # ------------------------------------------------------------------ checkpoint
    def _save(self, path: Path, state: dict) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=json.dumps(state["meta"]),
                         **{f"u_{a}__{b}": u for (a, b), u in state["potentials"].items()},
                         **{f"best_{a}__{b}": u for (a, b), u in state["best"].items()},
                         **{f"rdf_{a}__{b}": g for (a, b), g in state["best_rdfs"].items()},
                         positions=state["positions"], velocities=state["velocities"])

    def _load(self, path: Path) -> dict:
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                pots = {tuple(k[2:].split("__")): z[k] for k in z.files if k.startswith("u_")}
                best = {tuple(k[5:].split("__")): z[k] for k in z.files if k.startswith("best_")}
                rdfs = {tuple(k[4:].split("__")): z[k] for k in z.files if k.startswith("rdf_")}
                pos, vel = z["positions"], z["velocities"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot read the IBI checkpoint {path}: {exc}") from exc
        if meta.get("fingerprint") != self._fingerprint():
            raise CheckpointError(f"{path} belongs to a different IBI run (settings, targets or system differ); "
                                  "remove it or use another output directory")
        return {"meta": meta, "potentials": pots, "best": best, "best_rdfs": rdfs, "positions": pos,
                "velocities": vel}

    # ------------------------------------------------------------------ run
    def run(self, output_dir=None, *, resume: bool = True, progress: bool = True) -> IBIResult:
        """Iterate until converged or ``max_iterations``; write tables, log, plot and checkpoints.

        Parameters
        ----------
        output_dir : path-like, optional
            Where checkpoints, tables (OpenMM JSON, GROMACS, LAMMPS), the convergence log and
            plot go.  Without it nothing is written and there is no resume.
        resume : bool
            Continue from ``output_dir``'s checkpoint if there is one.
        """
        import openmm
        from tqdm.auto import tqdm

        s = self.settings
        kt = s.kt
        out = Path(output_dir) if output_dir is not None else None
        ckpt = out / self.CHECKPOINT if out is not None else None
        history: list[dict] = []
        start = 0
        best = best_rdfs = None
        best_error = np.inf
        best_iteration = 0
        velocities = None
        bonded = list(self.fixed_terms)
        best_bonded = list(bonded)
        if ckpt is not None and resume and ckpt.exists():
            state = self._load(ckpt)
            history = state["meta"]["history"]
            start = len(history)
            potentials = state["potentials"]
            best, best_rdfs = state["best"], state["best_rdfs"]
            best_error, best_iteration = state["meta"]["best_error"], state["meta"]["best_iteration"]
            positions, velocities = state["positions"], state["velocities"]
            if self.refiner is not None:
                bonded = self._with_refined(BondedRefiner.from_data(state["meta"]["bonded"]))
                best_bonded = self._with_refined(BondedRefiner.from_data(state["meta"]["best_bonded"]))
            logger.info("resuming IBI from %s at iteration %d", ckpt, start)
        else:
            potentials = {}
            for p in self.pairs:
                g = self.targets[p]
                valid = _first_run(g > s.g_min)
                u = extrapolate_core(self.r, np.where(valid, -kt * np.log(np.maximum(g, s.g_min)), 0.0), valid)
                potentials[p] = u - _tail_mean(self.r, u, s.cutoff, s.tail_width)
            positions = self.positions
        converged = bool(history and s.converged(history[-1]))
        taper = _taper(self.r, s.cutoff, s.tail_width)
        term = self._term(potentials)
        context, integrator, pair_forces = self._build(term, bonded, s.seed)
        context.setPositions(positions)
        if velocities is not None:
            context.setVelocities(velocities)
        else:
            openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
            context.setVelocitiesToTemperature(s.temperature, s.seed)
        bar = tqdm(range(start, s.max_iterations), desc="IBI", unit="it", disable=not progress or converged)
        for it in bar:
            if converged:
                break
            applied = {p: u * taper for p, u in potentials.items()}
            term = self._term(applied)
            term.update_context(pair_forces, context, self.info.type_names)
            counter = PairRDFCounter(self.info.bead_types, self.info.molecule_index, self.pairs, s.cutoff,
                                     s.bin_width, keep_frames=s.method == "imc")
            frames = [] if self.refiner is not None else None
            pressure, held = self._sample(context, integrator, counter, frames)
            if not held["held"]:
                logger.warning("IBI iteration %d sampled at a mean kinetic temperature of %.1f K, not %.1f K (allowed "
                               "%.1f K): the timestep (%g fs) is too large for these potentials, and the RDFs are not "
                               "those at %.1f K", it, held["mean_temperature_K"], s.temperature,
                               held["allowed_deviation_K"], s.timestep * 1e3, s.temperature)
            rdfs = counter.rdfs()
            errors = {"-".join(p): rdf_error(rdfs[p], self.targets[p]) for p in self.pairs}
            error = max(errors.values())
            history.append({"iteration": it, "error": error, "errors": errors, "pressure_bar": pressure,
                            "temperature_K": held["mean_temperature_K"], "temperature_held": held["held"]})
            if self.refiner is not None:
                cg_bonded = self.refiner.samples(np.asarray(frames), self.info, self.info.box_vectors)
                history[-1]["bonded_overlap"] = self.refiner.overlaps(self._refinable(bonded), cg_bonded)
            bar.set_postfix(error=f"{error:.4f}", P=f"{pressure:.0f} bar")
            logger.info("IBI iteration %d: RDF error %.4f (%s), pressure %.1f bar", it, error, errors, pressure)
            if best is None or s.rank(history[-1]) < s.rank(history[best_iteration]):
                best_error, best_iteration = error, it
                best = {p: u.copy() for p, u in applied.items()}
                best_rdfs = {p: g.copy() for p, g in rdfs.items()}
                best_bonded = list(bonded)
            if s.converged(history[-1]):
                converged = True
            else:
                ramp = 0.0
                if s.target_pressure is not None and it >= s.pressure_start:
                    ramp = min(1.0, (it - s.pressure_start + 1) / max(s.pressure_ramp, 1))
                new = {}
                updates = self._imc(counter, rdfs) if s.method == "imc" else {}
                for p in self.pairs:
                    du = updates[p] if s.method == "imc" else ibi_update(rdfs[p], self.targets[p], kt,
                                                                         damping=s.damping, g_min=s.g_min,
                                                                         smoothing=s.smoothing)
                    # anchor U(cutoff) = 0 on the tail window's mean update, not on one noisy bin
                    u = potentials[p] + du - _tail_mean(self.r, du, s.cutoff, s.tail_width)
                    if ramp > 0:
                        u = u + pressure_correction(self.r, s.cutoff, pressure, s.target_pressure, kt,
                                                    factor=s.pressure_factor, scale=ramp)
                    valid = _first_run((self.targets[p] > s.g_min) & (rdfs[p] > s.g_min))
                    new[p] = extrapolate_core(self.r, u, valid if valid.sum() >= 3
                                              else _first_run(self.targets[p] > s.g_min))
                potentials = new
                if self.refiner is not None and not held["held"]:
                    logger.warning("IBI iteration %d: bonded terms not refined (the run did not hold its temperature, "
                                   "so its bonded distributions are too broad)", it)
                elif self.refiner is not None:  # new bonded terms (checkpointed for a resume)
                    bonded = self._with_refined(self.refiner.update(self._refinable(bonded), cg_bonded))
                    if it + 1 < s.max_iterations:  # a new Context for the next iteration, the state carried over
                        st = context.getState(getPositions=True, getVelocities=True)
                        del context, integrator
                        context, integrator, pair_forces = self._build(self._term(potentials), bonded,
                                                                       s.seed + it + 1)
                        context.setPositions(st.getPositions(asNumpy=True))
                        context.setVelocities(st.getVelocities(asNumpy=True))
            if ckpt is not None:
                st = context.getState(getPositions=True, getVelocities=True)
                self._save(ckpt, {
                    "meta": {"fingerprint": self._fingerprint(), "history": history, "best_error": best_error,
                             "best_iteration": best_iteration,
                             **({"bonded": BondedRefiner.to_data(self._refinable(bonded)),
                                 "best_bonded": BondedRefiner.to_data(self._refinable(best_bonded))}
                                if self.refiner is not None else {})},
                    "potentials": potentials, "best": best, "best_rdfs": best_rdfs,
                    "positions": st.getPositions(asNumpy=True)._value, "velocities": st.getVelocities(asNumpy=True)._value,
                })
        bar.close()
        result = IBIResult(r=self.r, potentials=best, term=self._term(best), rdfs=best_rdfs, targets=self.targets,
                           history=history, converged=converged, best_iteration=best_iteration,
                           bonded_terms=best_bonded)
        if out is not None:
            self.write_outputs(result, out)
        return result

    def write_outputs(self, result: IBIResult, out: Path) -> None:
        """Tables for OpenMM (JSON), GROMACS (``table_A_B.xvg``), LAMMPS; log (JSON, CSV) and plot."""
        out.mkdir(parents=True, exist_ok=True)
        s = self.settings
        settings = dataclasses.asdict(s)
        write_openmm_tables(out / "pair_tables.json", result.term, settings=settings)
        tables = {}
        for (a, b), u in result.potentials.items():
            r_tab = np.concatenate([result.r, [s.cutoff]])
            u_tab = np.concatenate([u, [0.0]])
            tables[(a, b)] = (r_tab, u_tab)
            write_gromacs_table(out / f"table_{a}_{b}.xvg", r_tab, u_tab)
        write_lammps_tables(out / "pair_tables.lammps", tables)
        if result.bonded_terms:  # as held fixed, or as refined (refine_bonded)
            atomic_write_text(out / "bonded_terms.json", json.dumps(
                {"refined": s.refine_bonded, "best_iteration": result.best_iteration,
                 "terms": [t.to_data() for t in result.bonded_terms]}, indent=1))
        log = {"settings": settings, "converged": result.converged, "best_iteration": result.best_iteration,
               "metric": "per pair: RMS of g - g_target over the grid 0..cutoff; overall: max over pairs",
               "history": result.history, "package_versions": package_versions()}
        atomic_write_text(out / "convergence.json", json.dumps(log, indent=1))
        overlaps = list(result.history[0].get("bonded_overlap", {}))
        lines = ["iteration,error,pressure_bar,temperature_K," +
                 ",".join([f"error_{k}" for k in result.history[0]["errors"]] +
                          [f"overlap_{k.replace(' ', '_')}" for k in overlaps])]
        for h in result.history:
            temp = h.get("temperature_K")  # absent from checkpoints written before it was recorded
            lines.append(f"{h['iteration']},{h['error']:.6g},{h['pressure_bar']:.6g},"
                         f"{'' if temp is None else f'{temp:.6g}'}," +
                         ",".join([f"{v:.6g}" for v in h["errors"].values()] +
                                  [f"{h['bonded_overlap'][k]:.4f}" for k in overlaps]))
        atomic_write_text(out / "convergence.csv", "\n".join(lines) + "\n")
        plot_convergence(result, out / "convergence.png")


def plot_convergence(result: IBIResult, path) -> None:
    """Error vs iteration, final g(r) vs targets, and potentials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    its = [h["iteration"] for h in result.history]
    axes[0].semilogy(its, [h["error"] for h in result.history], "k-o", label="overall")
    for key in result.history[0]["errors"]:
        axes[0].semilogy(its, [h["errors"][key] for h in result.history], "--", label=key)
    axes[0].set(xlabel="iteration", ylabel="RDF RMS error", title="convergence")
    axes[0].legend(fontsize=7)
    for p, g in result.rdfs.items():
        line, = axes[1].plot(result.r, g, label=f"{'-'.join(p)} IBI")
        axes[1].plot(result.r, result.targets[p], ":", color=line.get_color(), label=f"{'-'.join(p)} target")
        axes[2].plot(result.r, result.potentials[p], color=line.get_color(), label="-".join(p))
    axes[1].set(xlabel="r / nm", ylabel="g(r)", title=f"best iteration {result.best_iteration}")
    axes[1].legend(fontsize=7)
    umax = max(float(np.percentile(u, 90)) for u in result.potentials.values())
    axes[2].set(xlabel="r / nm", ylabel="U / kJ mol$^{-1}$", ylim=(None, max(umax, 1.0) * 1.5 + 1), title="potentials")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

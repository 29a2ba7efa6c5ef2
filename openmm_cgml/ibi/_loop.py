"""The IBI loop: iterate pair (and optionally bonded) potentials in OpenMM until the RDFs match.

Convergence metric (stated): for each type pair, the RMS deviation of g_i from g_t over the grid from 0
to the cutoff, ``err_ab = sqrt(mean_k (g_i(r_k) - g_t(r_k))^2)``; overall, the largest over pairs.  Each
iteration also records its noise floor per pair, ``sqrt(target_noise^2 + sample_noise^2)``: the error that
sampling noise alone gives an exact potential (block estimates, :meth:`PairRDFCounter.noise`).  The loop stops
(:meth:`IBISettings.stop_reason`) when the overall error falls below ``tolerance`` (with a target pressure: and
the pressure is within ``pressure_tolerance`` of it), at the noise floor with the sampling at its cap, after
``patience`` iterations without a better one, or after ``max_iterations``; it returns the best iteration.  At
the noise floor, an iteration that did not improve on the best doubles ``production_steps`` for the next ones
(up to ``max_sampling_factor`` times the configured value; the current value is checkpointed, so a resumed run
continues exactly).  The pair tables are updated inside
one OpenMM Context (no rebuild).  With ``method="imc"`` the pair update is inverse Monte Carlo
(:func:`~openmm_cgml.ibi.imc_update`).  With ``refine_bonded`` the bonded terms are corrected too, every
iteration, on the frames already sampled (:class:`~openmm_cgml.ibi._bonded_refine.BondedRefiner`); the
Context is then rebuilt with the new terms.  Checkpoints (``ibi_checkpoint.chk`` in the output
directory, the format of :mod:`openmm_cgml._checkpoint`) make a rerun continue where it stopped; they hold
OpenMM's own checkpoint of the Context (positions, velocities and the integrator's random-number state), so a
run resumed after iteration k produces the same iterations k+1, ... as an uninterrupted one (bit-identical on
the same platform and thread count).  Resuming, refusing and overwriting follow
:func:`openmm_cgml._checkpoint.resume_or_start`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from .._checkpoint import json_ready, resume_or_start, write_checkpoint
from ..exceptions import CheckpointError, ConfigurationError, SimulationError
from ..forces.tabulated import TabulatedPairPotential
from ..geometry import check_cutoff
from ..topology import CGTopology, key_from_str
from ..units import BAR_PER_KJ_MOL_NM3, strip
from ._algebra import (
    _first_run,
    _smooth,
    _tail_mean,
    _taper,
    extrapolate_core,
    ibi_update,
    imc_update,
    pressure_correction,
    rdf_error,
)
from ._bonded_refine import _REFINABLE, BondedRefiner
from ._outputs import write_outputs
from ._rdf import PairRDFCounter, bonded_exclusions
from ._settings import IBIResult, IBISettings
from ._tables import TargetRDF

__all__ = ["IterativeBoltzmannInversion"]

logger = logging.getLogger(__name__)


def _guard_temperature(iteration: int, held: dict, s: IBISettings) -> None:
    """Stop a run that boils: its RDFs and tables would belong to another temperature, or to nothing."""
    mean = held["mean_temperature_K"]
    if s.temperature_guard is None or abs(mean - s.temperature) <= s.temperature_guard * s.temperature:
        return
    raise SimulationError(
        f"IBI iteration {iteration} sampled at a mean kinetic temperature of {mean:.4g} K, not {s.temperature:.1f} K "
        f"(more than temperature_guard = {s.temperature_guard:g}, i.e. {100 * s.temperature_guard:.0f} %, off): the "
        f"simulation boils, because the timestep ({s.timestep * 1e3:g} fs) is too large for these potentials or "
        "they are unstable. Lower 'timestep' (or check the starting potentials); iterations before this one are "
        "kept in the checkpoint. To continue regardless, raise 'temperature_guard' or set it to null")


def _openmm_seed(seed: int) -> int:
    """An integrator seed OpenMM uses as given: it reads 0 as "choose one at random", so seed 0 maps to a fixed
    non-zero seed (a run with ``seed: 0`` is reproducible too)."""
    return int(seed) if seed != 0 else 2**31 - 1


class IterativeBoltzmannInversion:
    """IBI of all bead-type pairs of a CG system, simulated in OpenMM (NVT, Langevin).

    Parameters
    ----------
    topology : CGTopology
        The CG system (types, molecules, bonds, masses, periodic box).
    positions : array, shape (n_beads, 3)
        Starting configuration (nm), e.g. a mapped AA frame.
    targets : dict
        ``{("A", "B"): TargetRDF}`` for every type pair (intermolecular g(r)).
    settings : IBISettings or dict
    fixed_terms : sequence of ForceTerm
        Terms kept fixed during IBI (bonded priors); with ``settings.refine_bonded`` the harmonic and
        tabulated bonded ones among them are refined instead.
    bonded_targets : dict, optional
        Target bonded samples, ``{"bond": {key: values}, ...}`` (:func:`bonded_samples` of the mapped
        reference); needed by ``refine_bonded``.
    target_noise : dict, optional
        ``{("A", "B"): float}``: the sampling noise of each target g(r) on this grid (RMS over the grid of its
        standard error; :func:`targets_from_dataset` with ``return_noise=True``).  Pairs left out, or None,
        count as noiseless targets, so the noise floor is the CG sample's alone (a lower floor: the noise-floor
        stop comes later, if at all).

    Notes
    -----
    Non-bonded pairs inside a molecule are excluded (``exclusions: molecule``), so targets must be intermolecular
    g(r) (as :func:`targets_from_dataset` computes); with ``exclusions: bonded`` only the 1-2 and 1-3 pairs along
    the bonds are, and targets count every other pair alike (``targets_from_dataset(..., exclusions="bonded")``).  Every iteration's System is built by
    :class:`~openmm_cgml.potential.CGPotential` (the package's one assembler), without a
    centre-of-mass remover: the Langevin thermostat needs none, and the pressure uses 3N degrees
    of freedom.
    """

    CHECKPOINT = "ibi_checkpoint.chk"

    def __init__(self, topology: CGTopology, positions, targets, settings: IBISettings, fixed_terms=(),
                 bonded_targets=None, target_noise=None):
        if not isinstance(topology, CGTopology):
            raise ConfigurationError(f"IBI takes a CGTopology, got {type(topology).__name__}")
        if not topology.periodic:
            raise ConfigurationError("IBI needs a periodic CG system (the topology has no box)")
        topology.require_masses("IBI")
        settings = settings if isinstance(settings, IBISettings) else IBISettings.from_data(dict(settings))
        info = topology
        self.topology = topology
        self.settings = settings
        self.positions = np.asarray(strip(positions, "length", name="positions"), dtype=float)
        if self.positions.shape != (info.n_beads, 3):
            raise ConfigurationError(f"positions must have shape ({info.n_beads}, 3), got {self.positions.shape}")
        check_cutoff(settings.cutoff, info.box_vectors, "IBI")
        self.fixed_terms = list(fixed_terms)
        self.refiner = None
        self._refined = [i for i, t in enumerate(self.fixed_terms) if isinstance(t, _REFINABLE)]
        if settings.refine_bonded:
            if bonded_targets is None:
                raise ConfigurationError("refine_bonded needs bonded_targets: the reference's bonded samples "
                                         "(openmm_cgml.ibi.bonded_samples of the mapped positions)")
            self.refiner = BondedRefiner([self.fixed_terms[i] for i in self._refined], bonded_targets, settings.kt,
                                         damping=settings.damping, update=settings.bonded_update,
                                         moments=settings.bonded_moments)
        self.pairs = info.type_pairs()
        given = {key_from_str(k, 2): v for k, v in targets.items()}
        unknown = [k for k in given if k not in self.pairs]
        if unknown:
            raise ConfigurationError(f"targets given for unknown bead-type pairs {unknown}; the system's pairs are "
                                     f"{['-'.join(p) for p in self.pairs]}")
        missing = [p for p in self.pairs if p not in given]
        if missing:
            raise ConfigurationError(f"no target RDF for the bead-type pairs {['-'.join(p) for p in missing]}")
        noise = {key_from_str(k, 2): v for k, v in (target_noise or {}).items() if v is not None}
        unknown = [k for k in noise if k not in self.pairs]
        if unknown:
            raise ConfigurationError(f"target_noise given for unknown bead-type pairs {unknown}; the system's pairs "
                                     f"are {['-'.join(p) for p in self.pairs]}")
        bad = {"-".join(k): v for k, v in noise.items() if not (np.isfinite(float(v)) and float(v) >= 0)}
        if bad:
            raise ConfigurationError(f"target_noise must be finite and non-negative; got {bad}")
        self.target_noise = {p: (float(noise[p]) if p in noise else None) for p in self.pairs}
        n = int(round(settings.cutoff / settings.bin_width))
        self.r = (np.arange(n) + 0.5) * settings.bin_width
        unknown = [k for k in settings.pair_cutoffs if key_from_str(k, 2) not in self.pairs]
        if unknown:
            raise ConfigurationError(f"pair_cutoffs given for unknown bead-type pairs {unknown}; the system's pairs "
                                     f"are {['-'.join(p) for p in self.pairs]}")
        # per pair: its cutoff, the bins inside it (where it is updated and scored) and its taper to zero there
        self.cutoffs = {p: settings.pair_cutoff(p) for p in self.pairs}
        self.inside = {p: self.r < self.cutoffs[p] for p in self.pairs}
        self.tapers = {p: _taper(self.r, self.cutoffs[p], settings.tail_width) * self.inside[p] for p in self.pairs}
        self.targets = {}
        for p in self.pairs:
            t = given[p] if isinstance(given[p], TargetRDF) else TargetRDF(*given[p], source=f"target {p}")
            self.targets[p] = np.ones_like(self.r)  # beyond the pair's cutoff: never scored
            self.targets[p][self.inside[p]] = t.on(self.r[self.inside[p]])

    # ------------------------------------------------------------------ pieces
    def _tail(self, p, u) -> float:
        """The anchor of U at pair ``p``'s cutoff: the mean of ``u`` over the tail window inside that cutoff."""
        inside = self.inside[p]
        return _tail_mean(self.r[inside], u[inside], self.cutoffs[p], self.settings.tail_width)

    def _term(self, potentials) -> TabulatedPairPotential:
        r_tab = np.concatenate([self.r, [self.settings.cutoff]])
        tables = {p: (r_tab, np.concatenate([u, [0.0]])) for p, u in potentials.items()}
        return TabulatedPairPotential(tables, cutoff=self.settings.cutoff, spacing=min(0.002, self.settings.bin_width),
                                      exclusions=self.settings.exclusions, name="pair")

    @property
    def info(self) -> CGTopology:
        return self.topology

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(self.settings.physics(), sort_keys=True).encode())
        if self.refiner is not None:
            h.update(json.dumps([t.to_data() for t in self.fixed_terms], sort_keys=True).encode())
            for kind, group in sorted(self.refiner.targets.items()):
                for key, values in sorted(group.items()):
                    h.update(f"{kind}:{'-'.join(key)}".encode())
                    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        for p in self.pairs:
            h.update("-".join(p).encode())
            h.update(np.round(self.targets[p], 8).tobytes())
        h.update(json.dumps(self._noise_identity(), sort_keys=True).encode())
        h.update(str(self.info.bead_types).encode())
        return h.hexdigest()[:16]

    def _noise_identity(self) -> dict:
        return {"-".join(p): (None if v is None else round(v, 10)) for p, v in self.target_noise.items()}

    def _identity(self) -> dict:
        """What :meth:`_fingerprint` hashes, readable: a refused checkpoint names the parts that differ."""

        def digest(*arrays) -> str:
            h = hashlib.sha256()
            for a in arrays:
                h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
            return h.hexdigest()[:16]

        data = {"settings": self.settings.physics(), "bead_types": [str(t) for t in self.info.bead_types],
                "targets": {"-".join(p): digest(np.round(self.targets[p], 8)) for p in self.pairs},
                "target_noise": self._noise_identity()}
        if self.refiner is not None:
            data["fixed_terms"] = [t.to_data() for t in self.fixed_terms]
            data["bonded_targets"] = {f"{kind}:{'-'.join(key)}": digest(values)
                                      for kind, group in sorted(self.refiner.targets.items())
                                      for key, values in sorted(group.items())}
        return data

    def _build(self, term, bonded, seed: int):
        import openmm

        from ..potential import CGPotential
        from ..reference.run import platform_properties

        s = self.settings
        system = CGPotential([term, *bonded]).createSystem(self.topology, removeCMMotion=False)
        pair_forces = [f for f in system.getForces() if f.getName().split(":")[0] == term.name]
        integrator = openmm.LangevinMiddleIntegrator(s.temperature, s.friction, s.timestep)
        integrator.setRandomNumberSeed(_openmm_seed(seed))
        platform = openmm.Platform.getPlatformByName(s.platform)
        context = openmm.Context(system, integrator, platform, platform_properties(platform, s.threads))
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

    def _sample(self, context, integrator, counter: PairRDFCounter, frames: list | None = None, *,
                production_steps: int) -> tuple[float, dict]:
        """Equilibrate, then sample the RDFs for ``production_steps`` (and append the positions to ``frames``); the
        mean pressure (bar) and the kinetic-temperature check."""
        import openmm
        from openmm import unit

        from ..simulation import degrees_of_freedom, kinetic_temperature, temperature_check

        s = self.settings

        def advance(n: int, phase: str) -> None:
            try:
                integrator.step(n)
            except openmm.OpenMMException as exc:  # OpenMM's own NaN check: a blow-up, named as such
                raise SimulationError(f"the CG simulation blew up during IBI's {phase} ({exc}); try a smaller "
                                      "timestep, more damping or a stiffer core") from None

        if s.equilibration_steps:
            advance(s.equilibration_steps, "equilibration")
        pressures, temps = [], []
        n_dof = degrees_of_freedom(context.getSystem())  # 3N: no constraints, no centre-of-mass remover
        for _ in range(production_steps // s.sample_interval):
            advance(s.sample_interval, "production")
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

    def _noise(self, counter: PairRDFCounter, errors: dict) -> dict:
        """The history entry's noise fields: per pair the target's and the sample's noise and the noise floor, and
        the largest ratio of error to floor over pairs (None where the sample has fewer than 2 frames)."""
        sample = counter.noise()
        out = {"target_noise": {"-".join(p): v for p, v in self.target_noise.items()},
               "sample_noise": None if sample is None else {"-".join(p): v for p, v in sample.items()},
               "noise_floor": None, "noise_ratio": None}
        if sample is None:
            return out
        floor = {"-".join(p): float(np.hypot(self.target_noise[p] or 0.0, sample[p])) for p in self.pairs}
        out["noise_floor"] = floor
        # a pair without noise has no floor: its ratio is 0 if it matches exactly, else unbounded (None: not at it)
        ratios = [errors[k] / f if f > 0 else (0.0 if errors[k] == 0 else np.inf) for k, f in floor.items()]
        out["noise_ratio"] = float(max(ratios)) if np.isfinite(max(ratios)) else None
        return out

    def _why(self, reason: str, entry: dict, best_iteration: int) -> str:
        s = self.settings
        if reason == "tolerance":
            return f"RDF error {entry['error']:.4f} below tolerance = {s.tolerance:g}"
        if reason == "noise_floor":
            return (f"RDF error at {entry['noise_ratio']:.2f} x its noise floor (at most noise_factor = "
                    f"{s.noise_factor:g}) with production_steps at its cap {entry['production_steps']}; best "
                    f"iteration {best_iteration}")
        return (f"no better iteration than {best_iteration} in the last {entry['iteration'] - best_iteration} "
                f"(patience = {s.patience})")

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
        """Write the checkpoint: the loop's state, and OpenMM's checkpoint of the Context (``state["context"]``,
        bytes) so that a resumed run continues the same trajectory and random-number stream."""
        buf = io.BytesIO()
        extra = {"context": np.frombuffer(state["context"], dtype=np.uint8)} if state.get("context") else {}
        np.savez(buf, **{f"u_{a}__{b}": u for (a, b), u in state["potentials"].items()},
                 **{f"best_{a}__{b}": u for (a, b), u in state["best"].items()},
                 **{f"rdf_{a}__{b}": g for (a, b), g in state["best_rdfs"].items()},
                 positions=state["positions"], velocities=state["velocities"], **extra)
        write_checkpoint(path, {"identity": self._fingerprint(), "identity_data": json_ready(self._identity()),
                                "meta": state["meta"]}, buf.getvalue())

    def _load(self, path: Path, found: tuple[dict, bytes]) -> dict:
        """The state of the checkpoint ``found`` (its header and payload, read from ``path``)."""
        header, payload = found
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                pots = {tuple(k[2:].split("__")): z[k] for k in z.files if k.startswith("u_")}
                best = {tuple(k[5:].split("__")): z[k] for k in z.files if k.startswith("best_")}
                rdfs = {tuple(k[4:].split("__")): z[k] for k in z.files if k.startswith("rdf_")}
                pos, vel = z["positions"], z["velocities"]
                context = z["context"].tobytes() if "context" in z.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot read the IBI checkpoint {path}: {exc}; pass --overwrite (overwrite: "
                                  "true) to start again") from exc
        return {"meta": header["meta"], "potentials": pots, "best": best, "best_rdfs": rdfs, "positions": pos,
                "velocities": vel, "context": context}

    def _restore(self, context, state: dict, path: Path) -> None:
        """Put the checkpointed Context state into ``context``: OpenMM's checkpoint if it has one and the platform
        can load it (an exact continuation), else positions and velocities (statistically equivalent only)."""
        import openmm

        if state["context"] is not None:
            try:
                context.loadCheckpoint(state["context"])
                return
            except openmm.OpenMMException as exc:
                why = f"OpenMM cannot load its Context checkpoint here ({exc})"
        else:
            why = "it was written by an earlier version, without OpenMM's Context checkpoint"
        logger.warning("IBI checkpoint %s: %s; continuing from its positions and velocities with a fresh "
                       "random-number stream, so the resumed iterations are statistically, not bitwise, those of an "
                       "uninterrupted run", path, why)
        context.setPositions(state["positions"])
        context.setVelocities(state["velocities"])

    # ------------------------------------------------------------------ run
    def run(self, output_dir=None, *, resume: bool = True, overwrite: bool = False,
            progress: bool = False) -> IBIResult:
        """Iterate until a stop criterion holds (:meth:`IBISettings.stop_reason`) or ``max_iterations``; write
        tables, log, plot and checkpoints.

        Parameters
        ----------
        output_dir : path-like, optional
            Where checkpoints, tables (OpenMM JSON, GROMACS, LAMMPS), the convergence log and
            plot go.  Without it nothing is written and there is no resume.
        resume : bool
            Continue from ``output_dir``'s checkpoint if there is one (the default); it must come from the same
            run (settings but ``max_iterations``, ``tolerance``, ``pressure_tolerance``, ``patience``, ``platform``
            and ``threads``; targets; fixed terms).  A run that stopped continues if the changed ones allow.  False: start fresh, but refuse to replace an existing checkpoint
            unless ``overwrite``.
        overwrite : bool
            Start fresh, replacing any checkpoint.
        progress : bool
            Show a progress bar.

        Raises
        ------
        CheckpointError
            If the checkpoint is corrupt or of another run (the message names the settings that differ), or
            exists while ``resume`` is False, and ``overwrite`` is False.
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
        state = None
        context_seed = s.seed
        production_steps = s.production_steps
        bonded = list(self.fixed_terms)
        best_bonded = list(bonded)
        found = None
        if ckpt is not None:
            found = resume_or_start(ckpt, self._identity(), resume=resume, overwrite=overwrite, what="IBI run",
                                    key=self._fingerprint())
        if found is not None:
            state = self._load(ckpt, found)
            history = state["meta"]["history"]
            start = len(history)
            potentials = state["potentials"]
            best, best_rdfs = state["best"], state["best_rdfs"]
            best_error, best_iteration = state["meta"]["best_error"], state["meta"]["best_iteration"]
            context_seed = state["meta"].get("context_seed", s.seed)
            production_steps = state["meta"].get("production_steps", s.production_steps)
            if self.refiner is not None:
                bonded = self._with_refined(BondedRefiner.from_data(state["meta"]["bonded"]))
                best_bonded = self._with_refined(BondedRefiner.from_data(state["meta"]["best_bonded"]))
            logger.info("resumed from iteration %d of %d (checkpoint %s)", start, s.max_iterations, ckpt)
        else:
            potentials = {}
            for p in self.pairs:
                if s.initial == "zero":  # a correction to a force field the fixed terms make whole
                    potentials[p] = np.zeros_like(self.r)
                    continue
                g = self.targets[p]
                valid = _first_run(g > s.g_min)
                u = extrapolate_core(self.r, np.where(valid, -kt * np.log(np.maximum(g, s.g_min)), 0.0), valid,
                                     min_curvature=s.core_curvature)
                potentials[p] = u - self._tail(p, u)
        converged = bool(history and s.converged(history[-1]))
        stop_reason = s.stop_reason(history, best_iteration) if history else None
        if stop_reason is not None:
            logger.info("IBI stopped at iteration %d already (%s); nothing to do", len(history) - 1,
                        self._why(stop_reason, history[-1], best_iteration))
        term = self._term(potentials)
        # the Context of a resumed run is built as the interrupted run's last one was (same seed), then loaded
        context, integrator, pair_forces = self._build(term, bonded, context_seed)
        if state is not None:
            self._restore(context, state, ckpt)
        else:
            context.setPositions(self.positions)
            openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
            context.setVelocitiesToTemperature(s.temperature, s.seed)
        bar = tqdm(range(start, s.max_iterations), desc="IBI", unit="it",
                   disable=not progress or stop_reason is not None)
        for it in bar:
            if stop_reason is not None:
                break
            applied = {p: u * self.tapers[p] for p, u in potentials.items()}
            term = self._term(applied)
            term.update_context(pair_forces, context, self.info.type_names)
            counter = PairRDFCounter(self.info.bead_types, self.info.molecule_index, self.pairs, s.cutoff,
                                     s.bin_width, keep_frames=s.method == "imc",
                                     excluded=bonded_exclusions(self.info) if s.exclusions == "bonded" else None)
            frames = [] if self.refiner is not None else None
            pressure, held = self._sample(context, integrator, counter, frames, production_steps=production_steps)
            _guard_temperature(it, held, s)
            if not held["held"]:
                logger.warning("IBI iteration %d sampled at a mean kinetic temperature of %.1f K, not %.1f K (allowed "
                               "%.1f K): the timestep (%g fs) is too large for these potentials, and the RDFs are not "
                               "those at %.1f K", it, held["mean_temperature_K"], s.temperature,
                               held["allowed_deviation_K"], s.timestep * 1e3, s.temperature)
            rdfs = counter.rdfs()
            errors = {"-".join(p): rdf_error(rdfs[p][self.inside[p]], self.targets[p][self.inside[p]])
                      for p in self.pairs}
            error = max(errors.values())
            history.append({"iteration": it, "error": error, "errors": errors, "pressure_bar": pressure,
                            "temperature_K": held["mean_temperature_K"], "temperature_held": held["held"],
                            "production_steps": production_steps, **self._noise(counter, errors)})
            if self.refiner is not None:
                cg_bonded = self.refiner.samples(np.asarray(frames), self.info, self.info.box_vectors)
                history[-1]["bonded_overlap"] = self.refiner.overlaps(self._refinable(bonded), cg_bonded)
            bar.set_postfix(error=f"{error:.4f}", P=f"{pressure:.0f} bar")
            ratio = history[-1]["noise_ratio"]
            logger.info("IBI iteration %d: RDF error %.4f (%s), %s, pressure %.1f bar", it, error, errors,
                        "noise floor unknown" if ratio is None else f"{ratio:.2f} x its noise floor", pressure)
            improved = best is None or s.rank(history[-1]) < s.rank(history[best_iteration])
            if improved:
                best_error, best_iteration = error, it
                best = {p: u.copy() for p, u in applied.items()}
                best_rdfs = {p: g.copy() for p, g in rdfs.items()}
                best_bonded = list(bonded)
            converged = s.converged(history[-1])
            stop_reason = s.stop_reason(history, best_iteration)
            if stop_reason is not None:
                logger.info("IBI stops after iteration %d: %s", it, self._why(stop_reason, history[-1], best_iteration))
            elif (s.noise_factor is not None and ratio is not None and ratio <= s.noise_factor and not improved
                  and production_steps < s.max_production_steps):
                grown = min(2 * production_steps, s.max_production_steps)
                logger.info("IBI iteration %d is at its noise floor (error %.2f x the floor, at most noise_factor = "
                            "%g) and no better than iteration %d: production_steps %d -> %d", it, ratio,
                            s.noise_factor, best_iteration, production_steps, grown)
                production_steps = grown
            if not converged:
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
                    du = du * self.inside[p]  # nothing to learn beyond the pair's own cutoff
                    u = potentials[p] + du - self._tail(p, du)
                    if ramp > 0:
                        u = u + self.inside[p] * pressure_correction(self.r, self.cutoffs[p], pressure,
                                                                     s.target_pressure, kt, factor=s.pressure_factor,
                                                                     scale=ramp)
                    valid = _first_run((self.targets[p] > s.g_min) & (rdfs[p] > s.g_min))
                    new[p] = extrapolate_core(self.r, u, valid if valid.sum() >= 3
                                              else _first_run(self.targets[p] > s.g_min),
                                              min_curvature=s.core_curvature)
                potentials = new
                if self.refiner is not None and not held["held"]:
                    logger.warning("IBI iteration %d: bonded terms not refined (the run did not hold its temperature, "
                                   "so its bonded distributions are too broad)", it)
                elif self.refiner is not None:  # new bonded terms (checkpointed for a resume)
                    bonded = self._with_refined(self.refiner.update(self._refinable(bonded), cg_bonded))
                    if it + 1 < s.max_iterations:  # a new Context for the next iteration, the state carried over
                        st = context.getState(getPositions=True, getVelocities=True)
                        del context, integrator
                        context_seed = s.seed + it + 1
                        context, integrator, pair_forces = self._build(self._term(potentials), bonded,
                                                                       context_seed)
                        context.setPositions(st.getPositions(asNumpy=True))
                        context.setVelocities(st.getVelocities(asNumpy=True))
            if ckpt is not None:
                st = context.getState(getPositions=True, getVelocities=True)
                self._save(ckpt, {
                    "meta": {"history": history, "best_error": best_error,
                             "best_iteration": best_iteration, "context_seed": context_seed,
                             "production_steps": production_steps, "stop_reason": stop_reason,
                             "platform": s.platform, "threads": s.threads,
                             **({"bonded": BondedRefiner.to_data(self._refinable(bonded)),
                                 "best_bonded": BondedRefiner.to_data(self._refinable(best_bonded))}
                                if self.refiner is not None else {})},
                    "potentials": potentials, "best": best, "best_rdfs": best_rdfs,
                    "positions": strip(st.getPositions(asNumpy=True), "length"),
                    "velocities": strip(st.getVelocities(asNumpy=True), "velocity"),
                    "context": context.createCheckpoint(),
                })
        bar.close()
        if stop_reason is None:
            stop_reason = "max_iterations"
            logger.info("IBI stops after iteration %d: max_iterations = %d reached; the best is iteration %d "
                        "(RDF error %.4f)", len(history) - 1, s.max_iterations, best_iteration, best_error)
        result = IBIResult(r=self.r, potentials=best, term=self._term(best), rdfs=best_rdfs, targets=self.targets,
                           history=history, converged=converged, best_iteration=best_iteration,
                           bonded_terms=best_bonded, stop_reason=stop_reason)
        if out is not None:
            write_outputs(result, self.settings, out)
        return result

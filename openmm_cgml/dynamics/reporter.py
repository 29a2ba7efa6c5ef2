"""An OpenMM reporter that accumulates MSD and VACF on the fly and rescales CG time to AA time."""

from __future__ import annotations

import json
import logging
import math

import numpy as np

from .._io import atomic_path, atomic_write_text, check_writable, package_versions
from ..analysis._checks import minimum_image
from ..analysis.msd import fit_diffusion
from ..analysis.vacf import GreenKuboResult, VACFResult, green_kubo_diffusion
from ..exceptions import ConfigurationError, SimulationError, TrajectoryError
from ..units import system_masses, to_md
from .alpha import AlphaModel, ConstantAlpha
from .correlator import MultiTauCorrelator

__all__ = ["TimeCorrelationReporter", "FORMAT"]

logger = logging.getLogger(__name__)

FORMAT = "openmm_cgml.time_correlation"


class TimeCorrelationReporter:
    """Accumulate the mean-square displacement and velocity autocorrelation during a simulation.

    Works with any :class:`openmm.app.Simulation` (CG or all-atom; for all-atom use ``alpha=1``).
    Positions are unwrapped by the reporter itself (minimum-image steps between reports, so a particle
    must not move more than half a box width between two reports), the centre-of-mass drift is removed,
    and many time origins are used with bounded memory (:class:`~openmm_cgml.dynamics.MultiTauCorrelator`).
    The output JSON holds the lag times on the CG axis and on the AA-equivalent axis t_AA = alpha t_CG,
    the MSD and VACF with standard errors, and D on both time axes (D_AA = D_CG / alpha).

    Parameters
    ----------
    file : path-like
        Output JSON file (written atomically at every ``writeInterval`` reports and on :meth:`close`).
    reportInterval : int
        Steps between frames.
    alpha : float or AlphaModel
        Acceleration factor (1 = no rescaling) or an alpha(T) model.
    alphaError : float
        Standard error of a constant ``alpha``.
    temperature : float (K), str or openmm Quantity, optional
        Temperature at which an alpha model is evaluated (default: the integrator's temperature).
    particles : sequence of int, optional
        Particles to analyse (default: every particle with non-zero mass).
    numLags, blockFactor, numLevels : int
        Correlator layout: lags 0..numLags-1 reports at full resolution, then decimated by blockFactor per
        level, up to (numLags - 1) * blockFactor**(numLevels - 1) reports.
    removeCOM : bool
        Subtract the centre of mass of all massive particles from the positions.
    writeInterval : int or None
        Reports between intermediate writes (None: only on close).
    plotFile : path-like, optional
        Also write a PNG of MSD and VACF against both time axes on close.
    """

    def __init__(self, file, reportInterval: int, *, alpha: float | AlphaModel = 1.0, alphaError: float = 0.0,
                 temperature=None, particles=None, numLags: int = 64, blockFactor: int = 8, numLevels: int = 3,
                 removeCOM: bool = True, writeInterval: int | None = 1000, plotFile=None):
        self._path = check_writable(file)
        self._plot = None if plotFile is None else check_writable(plotFile)
        self._reportInterval = int(reportInterval)
        if self._reportInterval < 1:
            raise ConfigurationError(f"reportInterval must be a positive number of steps, got {reportInterval}")
        self._alpha_model = alpha if isinstance(alpha, AlphaModel) else ConstantAlpha(float(alpha), float(alphaError))
        self._temperature = None if temperature is None else to_md(temperature, "temperature", name="temperature")
        self._particles = None if particles is None else np.asarray(particles, dtype=np.int64)
        self._layout = dict(n_lags=int(numLags), block_factor=int(blockFactor), n_levels=int(numLevels))
        self._removeCOM = bool(removeCOM)
        self._writeInterval = writeInterval
        self._correlator: MultiTauCorrelator | None = None
        self._last_wrapped = self._last_unwrapped = None
        self._masses = None
        self._times: list[float] = []
        self._first_step = None
        self._closed = False
        self._n_reports = 0

    # -- the OpenMM reporter protocol ---------------------------------------------------------------
    def describeNextReport(self, simulation):
        """Steps until the next report, and what it needs (positions and velocities, not wrapped)."""
        steps = self._reportInterval - simulation.currentStep % self._reportInterval
        return {"steps": steps, "periodic": False, "include": ["positions", "velocities"]}

    def report(self, simulation, state):
        """Add the frame in ``state`` to the correlations."""
        if self._closed:
            raise SimulationError("this TimeCorrelationReporter has been closed")
        from openmm import unit

        if self._correlator is None:
            self._initialize(simulation)
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[self._particles]
        vel = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)[self._particles]
        time = state.getTime().value_in_unit(unit.picosecond)
        if self._times and time <= self._times[-1]:
            raise TrajectoryError(f"report times must increase: got {time} ps after {self._times[-1]} ps")
        if len(self._times) >= 2:
            spacing = self._times[1] - self._times[0]
            if not math.isclose(time - self._times[-1], spacing, rel_tol=1e-6, abs_tol=1e-9):
                raise TrajectoryError(
                    f"reports must be evenly spaced in time (every {spacing} ps); got one {time - self._times[-1]} ps "
                    "after the previous (was the reporter shared between simulations or the step size changed?)")
        if self._last_wrapped is None:
            unwrapped = pos.copy()
        else:
            step = pos - self._last_wrapped
            if self._uses_pbc:
                box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
                step = minimum_image(step, np.asarray(box))
            unwrapped = self._last_unwrapped + step
        self._last_wrapped, self._last_unwrapped = pos, unwrapped
        x = unwrapped
        if self._removeCOM:
            x = unwrapped - self._com_of(state, unit, unwrapped)
        self._correlator.add(x, vel)
        self._times.append(time)
        self._n_reports += 1
        if self._writeInterval and self._n_reports % int(self._writeInterval) == 0:
            self._write()

    def close(self):
        """Write the final results and release the buffers; safe to call twice."""
        if self._closed:
            return
        if self._correlator is not None and self._correlator.n_frames > 0:
            self._write(plot=True)
        self._closed = True
        self._correlator = None

    # -- internals ---------------------------------------------------------------------------------
    def _initialize(self, simulation):
        from openmm import unit

        system = simulation.system
        n = system.getNumParticles()
        masses = system_masses(system)
        if self._particles is None:
            self._particles = np.flatnonzero(masses > 0)
        if self._particles.size == 0 or self._particles.min() < 0 or self._particles.max() >= n:
            raise ConfigurationError(f"particles must be indices in 0..{n - 1}, got {self._particles.tolist()[:10]}...")
        self._all_masses = masses
        self._massive = masses > 0
        self._uses_pbc = system.usesPeriodicBoundaryConditions()
        self._step_size = simulation.integrator.getStepSize().value_in_unit(unit.picosecond)
        if self._temperature is None and not isinstance(self._alpha_model, ConstantAlpha):
            get_t = getattr(simulation.integrator, "getTemperature", None)
            if get_t is None:
                raise ConfigurationError("an alpha(T) model needs a temperature: pass temperature= to the reporter")
            self._temperature = get_t().value_in_unit(unit.kelvin)
        self._correlator = MultiTauCorrelator(int(self._particles.size), velocities=True, **self._layout)
        self._first_step = simulation.currentStep
        self._com_positions = None
        logger.info("TimeCorrelationReporter: %d particles, lags up to %d reports, %.1f MB of buffers",
                    self._particles.size, self._correlator.max_lag, self._correlator.nbytes / 1e6)

    def _com_of(self, state, unit, unwrapped_selected):
        # the COM of all massive particles: keep every massive particle unwrapped when the selection is partial
        if self._particles.size == self._massive.sum() and np.all(self._massive[self._particles]):
            w = self._all_masses[self._particles]
            return (w[:, None] * unwrapped_selected).sum(axis=0) / w.sum()
        all_pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)[self._massive]
        if self._com_positions is None:
            self._com_positions = (all_pos, all_pos.copy())
        else:
            last_wrapped, last_unwrapped = self._com_positions
            step = all_pos - last_wrapped
            if self._uses_pbc:
                box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
                step = minimum_image(step, box)
            self._com_positions = (all_pos, last_unwrapped + step)
        w = self._all_masses[self._massive]
        return (w[:, None] * self._com_positions[1]).sum(axis=0) / w.sum()

    @property
    def alpha(self) -> float:
        """The acceleration factor used (at the reporter's temperature for alpha models)."""
        return self._alpha_model.alpha(self._temperature)

    def results(self) -> dict:
        """The current results as a JSON-ready dict (the content of the output file)."""
        if self._correlator is None or self._correlator.n_frames < 2:
            raise TrajectoryError("fewer than 2 reports so far; nothing to correlate")
        res = self._correlator.result()
        dt = self._times[1] - self._times[0]
        alpha = self._alpha_model.alpha(self._temperature)
        alpha_err = self._alpha_model.alpha_err(self._temperature)
        t_cg = res.lags * dt
        out = {
            "format": FORMAT,
            "format_version": 1,
            "units": {"time": "ps", "msd": "nm**2", "vacf": "nm**2/ps**2", "D": "nm**2/ps", "temperature": "K"},
            "alpha": alpha,
            "alpha_err": alpha_err,
            "alpha_model": {"model": self._alpha_model.name, "parameters": self._alpha_model.to_data()},
            "temperature": self._temperature,
            "report_interval_steps": self._reportInterval,
            "step_size_ps": self._step_size,
            "report_spacing_ps": dt,
            "n_reports": self._correlator.n_frames,
            "n_particles": int(self._particles.size),
            "correlator": {"n_lags": self._correlator.n_lags, "block_factor": self._correlator.block_factor,
                           "n_levels": self._correlator.n_levels, "remove_com": self._removeCOM},
            "lag_reports": res.lags.tolist(),
            "n_origins": res.n_origins.tolist(),
            "time_cg": t_cg.tolist(),
            "time_aa": (alpha * t_cg).tolist(),
            "msd": res.msd.tolist(),
            "msd_err": res.msd_err.tolist(),
            "vacf": res.vacf.tolist(),
            "vacf_err": res.vacf_err.tolist(),
            "diffusion": self._diffusion(t_cg, res, alpha, alpha_err),
            "package_versions": package_versions(),
        }
        return out

    def _diffusion(self, t_cg, res, alpha, alpha_err) -> dict:
        entry: dict = {}
        try:
            fit = fit_diffusion(t_cg, res.msd, per_particle=res.msd_per_particle)
        except TrajectoryError as exc:
            logger.warning("no diffusion coefficient yet: %s", exc)
            fit = None
        if fit is not None:
            d_aa = fit.D / alpha
            entry["msd"] = {
                "D_cg_time": fit.D, "D_cg_time_err": fit.D_err,
                "D_aa_time": d_aa, "D_aa_time_err": abs(d_aa) * math.hypot(fit.D_err / fit.D if fit.D else 0.0,
                                                                             alpha_err / alpha),
                "fit_range_cg": list(fit.fit_range), "fit_range_aa": [alpha * t for t in fit.fit_range],
                "linear_regime_detected": fit.linear_regime_detected, "error_method": fit.error_method,
            }
        # Green-Kubo on the exactly sampled (level-0, all-origins) part of the VACF
        n0 = min(self._correlator.n_lags, res.lags.size)
        if n0 >= 3:
            vacf = VACFResult(lag_times=t_cg[:n0], vacf=res.vacf[:n0], vacf_err=res.vacf_err[:n0],
                              per_particle=res.vacf_per_particle[:n0], n_particles=int(self._particles.size))
            gk: GreenKuboResult = green_kubo_diffusion(vacf)
            entry["green_kubo"] = {"D_cg_time": gk.D, "D_cg_time_err": gk.D_err, "D_aa_time": gk.D / alpha,
                                   "t_max_cg": gk.t_max, "plateau_detected": gk.plateau_detected}
        return entry

    def _write(self, plot: bool = False) -> None:
        try:
            data = self.results()
        except TrajectoryError as exc:
            logger.info("TimeCorrelationReporter: nothing written yet (%s)", exc)
            return
        atomic_write_text(self._path, json.dumps(data, indent=1) + "\n")
        if plot and self._plot is not None:
            self._write_plot(data)

    def _write_plot(self, data: dict) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for key, label in (("time_cg", "CG time"), ("time_aa", f"AA time (alpha = {data['alpha']:.3g})")):
            t = np.asarray(data[key])
            axes[0].errorbar(t[1:], data["msd"][1:], yerr=data["msd_err"][1:], label=label, fmt=".-", ms=3)
            axes[1].errorbar(t, data["vacf"], yerr=data["vacf_err"], label=label, fmt=".-", ms=3)
        axes[0].set(xscale="log", yscale="log", xlabel="t (ps)", ylabel="MSD (nm$^2$)")
        axes[1].set(xscale="log", xlabel="t (ps)", ylabel=r"$\langle v(0)\cdot v(t)\rangle$ (nm$^2$/ps$^2$)")
        for ax in axes:
            ax.legend()
        fig.tight_layout()
        with atomic_path(self._plot) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)

    def __del__(self):  # a reporter dropped without close() should not lose its results silently
        if not getattr(self, "_closed", True) and getattr(self, "_correlator", None) is not None:
            logger.warning("TimeCorrelationReporter for %s was not closed; call close() to write the results",
                           getattr(self, "_path", "?"))



"""Compare a CG run with its AA (or mapped-AA) reference: the ``cgml compare`` workflow.

Example configuration::

    reference: aa_mapped.h5         # openmm_cgml dataset (all-atom or mapped to beads), or a list of
                                    # independent replicas (structure from the first, D over all)
    model: cg.h5                    # openmm_cgml dataset of the CG run (cgml run), or a list of replicas
    output: comparison/             # directory for the table and figures
    r_max: "1.2 nm"                 # optional; default min(1.5 nm, half the box)
    n_bins: 100
    viscosity:                      # optional: Yeh-Hummer corrected D (each run's own viscosity)
      reference: "0.45 mPa*s"
      model: "0.12 mPa*s"
    allow_thermostat_mismatch: false  # alpha between runs under different / damping thermostats
    n_blocks: 5                     # blocks of each trajectory for the standard error of D
    temperatures:                   # optional: runs at several temperatures for the Arrhenius fits
      - {temperature: "280 K", reference: aa_280.h5, model: cg_280.h5}
      - {temperature: "320 K", reference: aa_320.h5, model: cg_320.h5}
    predicted_alpha:                # optional: a learned alpha (cgml learn) checked against the measured one
      file: learned/alpha_model.json
      parameters: {bonds_k: 3.0e5}  # or forcefield: openff-2.2.0 (read by the model itself);
                                    # a descriptor model: molecule: {smiles: ..., density: ...} too
    pressure:                       # optional: both runs' pressures (molecular virial) at the reference's density
      reference_system: aa.system.xml
      reference_trajectory: aa.h5   # the all-atom run behind a mapped reference
      model_system: cg_system.xml

Particles are compared per type: a coarse-grained dataset's bead types come from the CG topology in its
metadata (``cgml map`` and ``cgml run`` store it), an all-atom dataset's types are its atom names.  Relative
paths are relative to ``base_dir`` (``cgml compare``: the configuration file's folder).  Writes
``comparison.json``, ``comparison.md``, ``comparison.csv``, figures (PNG) and, with two or more
temperatures, ``alpha_model.json`` (the alpha(T) model for :class:`~openmm_cgml.dynamics.TimeCorrelationReporter`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from ..config import PositiveLength, StrictModel, Temperature

__all__ = ["TemperatureRun", "Viscosities", "CompareConfig", "CompareResult", "run_compare"]

logger = logging.getLogger(__name__)


class TemperatureRun(StrictModel):
    """A reference/model pair of datasets at one temperature."""

    temperature: Temperature = Field(description="the temperature of both runs")
    reference: Path = Field(description="the reference dataset at this temperature")
    model: Path = Field(description="the CG run's dataset at this temperature")


class Viscosities(StrictModel):
    """Shear viscosities of the two runs, for the Yeh-Hummer finite-size correction of D."""

    reference: str = Field(description="viscosity of the reference run with its unit, e.g. '0.45 mPa*s' "
                                       "(openmm_cgml.dynamics.periodic_perturbation_viscosity measures it)")
    model: str = Field(description="viscosity of the model (CG) run with its unit, e.g. '0.12 mPa*s'")

    @field_validator("reference", "model")
    @classmethod
    def _positive_viscosity(cls, value: str) -> str:
        from ..analysis.msd import _viscosity_pa_s
        from ..exceptions import TrajectoryError

        try:
            eta = _viscosity_pa_s(value)
        except TrajectoryError as exc:
            raise ValueError(str(exc)) from exc
        if not eta > 0:
            raise ValueError(f"a viscosity must be positive, got {value!r}")
        return value


class PredictedAlphaSpec(StrictModel):
    """A saved alpha model (``cgml learn``'s ``alpha_model.json``, or any :func:`~openmm_cgml.dynamics.save_alpha_model`
    file) to set beside the measured alpha, and the force-field parameters a predicted model is evaluated at."""

    file: Path = Field(description="the alpha model file")
    parameters: dict[str, float | dict[str, list[float]]] | None = Field(
        None, description="a predicted model's inputs by column, in its units (null: the model's own, or "
        "forcefield); with molecule, a united-atom force field")
    forcefield: str | None = Field(None, description="an OpenFF force field the predicted model reads its inputs "
                                   "from (features addressed by SMIRKS, or with molecule its descriptors)")
    molecule: dict | None = Field(None, description="a model of molecule descriptors: the molecule (a sweep's "
                                  "molecule block) whose descriptors it evaluates")


class PressureSpec(StrictModel):
    """The Systems behind the runs, to compare their pressures at the reference's density (a check a pair
    potential fitted to g(r) need not pass): :func:`~openmm_cgml.simulation.trajectory_pressure` of each."""

    reference_system: Path = Field(description="the reference's System XML (the all-atom one for a mapped "
                                   "reference, e.g. aa.system.xml)")
    reference_trajectory: Path | None = Field(None, description="the trajectory of reference_system (the all-atom "
                                              "dataset behind a mapped reference; null: the reference itself)")
    model_system: Path = Field(description="the model run's System XML (e.g. cg_system.xml)")
    max_frames: int = Field(200, ge=2, description="frames of each trajectory, evenly strided")
    temperature: Temperature | None = Field(None, description="for trajectories without velocities: the kinetic "
                                            "term's temperature (null: the one each dataset records)")


class CompareConfig(StrictModel):
    """Configuration of ``cgml compare`` (:func:`run_compare`)."""

    reference: Path | list[Path] = Field(description="the reference dataset: all-atom, or mapped to beads (`cgml "
                                                     "map`), or a list of independent replicas (structure from the "
                                                     "first, D averaged over all); relative paths in this file are "
                                                     "relative to its folder")
    model: Path | list[Path] = Field(description="the CG run's dataset (`cgml run`), or a list of independent "
                                                 "replicas; bead types from its CG topology")
    viscosity: Viscosities | None = Field(None, description="viscosities of both runs: D is then also reported "
                                          "Yeh-Hummer corrected and alpha uses the corrected values (null: finite "
                                          "size not corrected, flagged in the table)")
    allow_thermostat_mismatch: bool = Field(False, description="compute alpha even when the runs' thermostats give "
                                            "different transport or damp it (Langevin); otherwise alpha is refused "
                                            "and the table says why")
    n_blocks: int = Field(5, ge=2, le=100, description="contiguous blocks of each trajectory for the standard error "
                                                       "of D")
    output: Path = Field(description="directory for the table (JSON, Markdown, CSV) and the figures")
    r_max: PositiveLength | None = Field(None, description="RDF range (null: min(1.5 nm, half the smallest box width))")
    n_bins: int = Field(100, ge=5, le=10_000, description="RDF bins")
    temperatures: list[TemperatureRun] = Field(default_factory=list, description="optional runs at several "
                                               "temperatures, for the Arrhenius fits and the alpha(T) model")
    alpha_model_file: str = Field("alpha_model.json", description="file name of the alpha(T) model in output (with "
                                                                  "two or more temperatures)")
    predicted_alpha: PredictedAlphaSpec | None = Field(None, description="an alpha model (e.g. learned) evaluated at "
                                                       "the model run's temperature and compared with the measured "
                                                       "alpha")
    pressure: PressureSpec | None = Field(None, description="the runs' Systems: adds their pressures (molecular "
                                          "virial) at the reference's density")


@dataclass(frozen=True)
class CompareResult:
    """The table (with the curves behind it), the temperature comparison (or None) and the output folder."""

    comparison: object
    table: object
    temperatures: object
    output: Path


def run_compare(config: CompareConfig, *, base_dir=None) -> CompareResult:
    """Compare the runs of ``config``; write the table (JSON, Markdown, CSV), figures and the alpha model."""
    from .._io import atomic_write_text, package_versions
    from ..analysis.compare import Comparison, compare_runs, compare_temperatures, plot_comparison
    from ..dataset import open_dataset
    from ..dynamics.alpha import ArrheniusAlpha, save_alpha_model
    from ..exceptions import ConfigurationError, TrajectoryError

    config = config if isinstance(config, CompareConfig) else CompareConfig.from_data(dict(config))
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    def _path(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    out = _path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    def _runs(p):
        return [open_dataset(_path(q)) for q in p] if isinstance(p, list) else open_dataset(_path(p))

    if isinstance(config.reference, list) and not config.reference or isinstance(config.model, list) and not config.model:
        raise ConfigurationError("reference and model need at least one dataset each (an empty list was given)")
    viscosity = None if config.viscosity is None else config.viscosity.to_data()
    models = _runs(config.model)
    try:
        comparison = compare_runs(_runs(config.reference), models, r_max=config.r_max,
                                  n_bins=config.n_bins, viscosity=viscosity, n_blocks=config.n_blocks,
                                  allow_thermostat_mismatch=config.allow_thermostat_mismatch)
    except TrajectoryError as exc:
        if viscosity is not None and "temperature" in str(exc):
            raise ConfigurationError(f"viscosity: {exc}") from exc
        raise
    rows = list(comparison.rows)
    if config.predicted_alpha is not None:
        rows.append(_predicted_alpha_row(config.predicted_alpha, _path, rows, models))
    if config.pressure is not None:
        reference = _runs(config.reference)
        rows.append(_pressure_row(config.pressure, _path, reference[0] if isinstance(reference, list) else reference,
                                  models[0] if isinstance(models, list) else models))
    temps = None
    if config.temperatures:
        runs = [(t.temperature, open_dataset(_path(t.reference)), open_dataset(_path(t.model)))
                for t in config.temperatures]
        temps = compare_temperatures(runs, allow_thermostat_mismatch=config.allow_thermostat_mismatch,
                                     n_blocks=config.n_blocks)
        rows.extend(temps.rows())
        if temps.alpha_refused:
            logger.warning("no %s written: %s", config.alpha_model_file, temps.alpha_refused)
        else:
            save_alpha_model(out / config.alpha_model_file,
                             ArrheniusAlpha.from_fits(temps.fit_model, temps.fit_reference),
                             metadata={"configuration": config.to_data(), "unconverged": list(temps.unconverged)})
    table = Comparison(rows=tuple(rows))
    payload = {"configuration": config.to_data(), "rows": table.to_data(), "package_versions": package_versions(),
               "metrics": {"rdf": "rms difference sqrt(int (g_model - g_ref)^2 dr / int dr)",
                           "distributions": "overlap coefficient int min(p_model, p_ref) dx",
                           "alpha": "D_model / D_ref of molecular centres of mass",
                           "D": "slope of the centre-of-mass MSD / 6 over the diffusive window (local slope d ln MSD "
                                "/ d ln t within 0.1 of 1 over a factor 3 in time; 'not converged' otherwise)",
                           "errors": "'s.e.': standard error (D: the larger of the block and molecule errors, "
                                     "replicas when given); 'sd': standard deviation of a distribution; 'fixed "
                                     "(NVT)': no fluctuation"}}
    atomic_write_text(out / "comparison.json", json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write_text(out / "comparison.md", table.to_markdown())
    atomic_write_text(out / "comparison.csv", table.to_csv())
    figures = plot_comparison(comparison, out, temps)
    logger.info("wrote the comparison table and %d figures to %s", len(figures), out)
    return CompareResult(comparison, table, temps, out)


def _pressure_row(spec: PressureSpec, path, reference, model):
    """The row comparing the model run's pressure with the reference's (both from the molecular virial)."""
    import math

    from ..analysis.compare import ComparisonRow
    from ..dataset import open_dataset
    from ..forces.xml import load_system
    from ..simulation import trajectory_pressure

    trajectory = open_dataset(path(spec.reference_trajectory)) if spec.reference_trajectory else reference
    p_ref = trajectory_pressure(load_system(path(spec.reference_system)), trajectory, max_frames=spec.max_frames,
                                temperature=spec.temperature)
    p_mod = trajectory_pressure(load_system(path(spec.model_system)), model, max_frames=spec.max_frames,
                                temperature=spec.temperature)
    diff = p_mod["pressure_bar"] - p_ref["pressure_bar"]
    err = math.hypot(p_ref["pressure_err_bar"], p_mod["pressure_err_bar"])
    return ComparisonRow("pressure (molecular virial)", "bar", p_ref["pressure_bar"], p_ref["pressure_err_bar"],
                         p_mod["pressure_bar"], p_mod["pressure_err_bar"], "model - reference", diff,
                         value_err=err, note=f"{p_ref['n_frames']} and {p_mod['n_frames']} frames; at the "
                         f"reference's density the model {'matches' if abs(diff) <= 2 * err else 'misses'} its "
                         "pressure (2 s.e.)")


def _predicted_alpha_row(spec: PredictedAlphaSpec, path, rows: list, model_runs):
    """The row setting an alpha model's prediction (at the model run's temperature) beside the measured alpha."""
    import math

    from ..analysis.compare import ComparisonRow, run_temperature
    from ..dynamics.alpha import load_alpha_model
    from ..exceptions import ConfigurationError

    model = load_alpha_model(path(spec.file))
    if spec.parameters is not None or spec.forcefield is not None or spec.molecule is not None:
        if not hasattr(model, "with_parameters"):
            raise ConfigurationError(f"predicted_alpha: the {model.name!r} model in {spec.file} takes no parameters "
                                     "or force field")
        model = model.with_parameters(spec.parameters, spec.forcefield, spec.molecule)
    run = model_runs[0] if isinstance(model_runs, list) else model_runs
    temperature = run_temperature(run)
    predicted, predicted_err = model.alpha(temperature), model.alpha_err(temperature)
    measured = next((r for r in rows if r.quantity == "alpha"), None)
    value, err = (measured.model, measured.model_err) if measured is not None else (math.nan, math.nan)
    outside = model.outside_training_range(temperature) if hasattr(model, "outside_training_range") else []
    if math.isfinite(value):
        combined = math.hypot(predicted_err, err)
        z = (predicted - value) / combined if combined > 0 else math.inf
        note = (f"{model.name} model at {temperature:g} K: measured alpha {'inside' if abs(z) <= 1.96 else 'outside'} "
                f"the 95 % interval (z = {z:.2g})")
    else:
        why = measured.note if measured else "diffusion not compared"
        note = f"{model.name} model at {temperature:g} K: no measured alpha to compare ({why})"
    if outside:
        note += f"; inputs outside the training range: {', '.join(outside)} (an extrapolation)"
    return ComparisonRow("alpha (predicted)", "1", value, err, predicted, predicted_err, "predicted / measured",
                         predicted / value if math.isfinite(value) and value > 0 else math.nan, "s.e.", "s.d.",
                         note=note)

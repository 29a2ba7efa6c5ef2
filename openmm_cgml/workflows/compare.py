"""Compare a CG run with its AA (or mapped-AA) reference: the ``cgml compare`` workflow.

Example configuration::

    reference: aa_mapped.h5         # openmm_cgml dataset (all-atom or mapped to beads)
    model: cg.h5                    # openmm_cgml dataset of the CG run (cgml run)
    output: comparison/             # directory for the table and figures
    r_max: "1.2 nm"                 # optional; default min(1.5 nm, half the box)
    n_bins: 100
    temperatures:                   # optional: runs at several temperatures for the Arrhenius fits
      - {temperature: "280 K", reference: aa_280.h5, model: cg_280.h5}
      - {temperature: "320 K", reference: aa_320.h5, model: cg_320.h5}

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

from pydantic import Field

from ..config import PositiveLength, StrictModel, Temperature

__all__ = ["TemperatureRun", "CompareConfig", "CompareResult", "run_compare"]

logger = logging.getLogger(__name__)


class TemperatureRun(StrictModel):
    """A reference/model pair of datasets at one temperature."""

    temperature: Temperature = Field(description="the temperature of both runs")
    reference: Path = Field(description="the reference dataset at this temperature")
    model: Path = Field(description="the CG run's dataset at this temperature")


class CompareConfig(StrictModel):
    """Configuration of ``cgml compare`` (:func:`run_compare`)."""

    reference: Path = Field(description="the reference dataset: all-atom, or mapped to beads (`cgml map`); "
                                        "relative paths in this file are relative to its folder")
    model: Path = Field(description="the CG run's dataset (`cgml run`); bead types from its CG topology")
    output: Path = Field(description="directory for the table (JSON, Markdown, CSV) and the figures")
    r_max: PositiveLength | None = Field(None, description="RDF range (null: min(1.5 nm, half the smallest box width))")
    n_bins: int = Field(100, ge=5, le=10_000, description="RDF bins")
    temperatures: list[TemperatureRun] = Field(default_factory=list, description="optional runs at several "
                                               "temperatures, for the Arrhenius fits and the alpha(T) model")
    alpha_model_file: str = Field("alpha_model.json", description="file name of the alpha(T) model in output (with "
                                                                  "two or more temperatures)")


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

    config = config if isinstance(config, CompareConfig) else CompareConfig.from_data(dict(config))
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    def _path(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    out = _path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    reference, model = open_dataset(_path(config.reference)), open_dataset(_path(config.model))
    comparison = compare_runs(reference, model, r_max=config.r_max, n_bins=config.n_bins)
    rows = list(comparison.rows)
    temps = None
    if config.temperatures:
        runs = [(t.temperature, open_dataset(_path(t.reference)), open_dataset(_path(t.model)))
                for t in config.temperatures]
        temps = compare_temperatures(runs)
        rows.extend(temps.rows())
        save_alpha_model(out / config.alpha_model_file, ArrheniusAlpha.from_fits(temps.fit_model, temps.fit_reference),
                         metadata={"configuration": config.to_data()})
    table = Comparison(rows=tuple(rows))
    payload = {"configuration": config.to_data(), "rows": table.to_data(), "package_versions": package_versions(),
               "metrics": {"rdf": "rms difference sqrt(int (g_model - g_ref)^2 dr / int dr)",
                           "distributions": "overlap coefficient int min(p_model, p_ref) dx",
                           "alpha": "D_model / D_ref of molecular centres of mass"}}
    atomic_write_text(out / "comparison.json", json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write_text(out / "comparison.md", table.to_markdown())
    atomic_write_text(out / "comparison.csv", table.to_csv())
    figures = plot_comparison(comparison, out, temps)
    logger.info("wrote the comparison table and %d figures to %s", len(figures), out)
    return CompareResult(comparison, table, temps, out)

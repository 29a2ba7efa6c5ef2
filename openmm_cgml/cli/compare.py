"""``cgml compare config.yaml``: compare a CG run with its AA (or mapped-AA) reference.

Example configuration::

    reference: aa_mapped.h5         # openmm_cgml dataset (all-atom or mapped to beads)
    model: cg.h5                    # openmm_cgml dataset of the CG run
    output: comparison/             # directory for the table and figures
    r_max: "1.2 nm"                 # optional; default min(1.5 nm, half the box)
    n_bins: 100
    temperatures:                   # optional: runs at several temperatures for the Arrhenius fits
      - {temperature: "280 K", reference: aa_280.h5, model: cg_280.h5}
      - {temperature: "320 K", reference: aa_320.h5, model: cg_320.h5}

Writes ``comparison.json``, ``comparison.md``, ``comparison.csv``, figures (PNG) and, with two or more
temperatures, ``alpha_model.json`` (the alpha(T) model for :class:`TimeCorrelationReporter`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import Field

from ..config import Length, StrictModel, Temperature, load_config

logger = logging.getLogger(__name__)


class TemperatureRun(StrictModel):
    """A reference/model pair of datasets at one temperature."""

    temperature: Temperature
    reference: Path
    model: Path


class CompareConfig(StrictModel):
    """Configuration of ``cgml compare``."""

    reference: Path
    model: Path
    output: Path
    r_max: Length | None = None
    n_bins: int = Field(100, ge=5, le=10_000)
    temperatures: list[TemperatureRun] = Field(default_factory=list)
    alpha_model_file: str = "alpha_model.json"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="compare a CG run with its all-atom reference (table + figures)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="YAML configuration (see the module documentation)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from .._io import atomic_write_text, package_versions
    from ..analysis.compare import compare_runs, compare_temperatures, plot_comparison
    from ..dataset import open_dataset
    from ..dynamics.alpha import save_alpha_model

    config = load_config(args.config, CompareConfig)
    base = Path(args.config).resolve().parent

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
        save_alpha_model(out / config.alpha_model_file, temps.alpha_model(),
                         metadata={"configuration": config.to_data()})
    from ..analysis.compare import Comparison

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
    print(table.to_markdown())
    return 0
